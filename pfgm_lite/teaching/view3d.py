"""The augmented space of 2D data in 3D: charges on z = 0, field lines, the hemisphere, flows back to the data.

One scene, two renderings: a rotatable plotly figure (JupyterLab, and the book) and a matplotlib still of the same
traces from the same viewpoint (GitHub's viewer, which runs no JavaScript; nbval). `show_scene` publishes
both in one output, and each front end shows the richest it can.

Why plotly: its JupyterLab renderer ships inside the Python package (no CDN, works offline), a figure is a small
JSON output (lines thinned to about 60 points, float32; well under the notebooks' size limit), and its WebGL renders
in headless Chromium with the software renderer. matplotlib's interactive 3D needs a live kernel (ipympl), so it cannot be read on a static page.
"""
from __future__ import annotations

import base64
import io
import json
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from ..checks import check_int, check_positive, check_tensor
from .plotting import _cut_at_radius, stacked_trajectory

PLOTLY_MIME = "application/vnd.plotly.v1+json"


@dataclass
class Curves:
    """Polylines: each (K, 3) array of points (x1, x2, height)."""

    paths: list[np.ndarray]
    name: str
    color: str = "#1f77b4"
    width: float = 2.0


@dataclass
class Points:
    """Markers: (B, 3) points (x1, x2, height)."""

    points: np.ndarray
    name: str
    color: str = "#d62728"
    size: float = 3.0


@dataclass
class Scene:
    """What a 3D view draws, with its axis labels and viewpoint (elevation and azimuth in degrees)."""

    title: str
    items: list = field(default_factory=list)
    height_label: str = "z"
    elev: float = 22.0
    azim: float = -60.0


def field_line_scene(charges: torch.Tensor, path: torch.Tensor, radius: float, title: str | None = None) -> Scene:
    """Charges on the plane and their field lines, each cut where it first leaves the ball of `radius`.

    charges: (M, 2) on z = 0
    path:    (T, B, 3) field lines (x1, x2, z), e.g. from flows.trace_field_lines(..., return_path=True)
    returns: a Scene with the hemisphere, the lines, their crossings of the hemisphere and the charges
    """
    check_tensor("charges", charges, ndim=2, last_dim=2)
    check_tensor("path", path, ndim=3, last_dim=3)
    radius = check_positive("radius", radius)
    lines = _cut_at_radius(path.detach().double().cpu().numpy(), radius)   # start to where it leaves the ball
    if not lines:
        raise ValueError(f"no field line of path comes inside radius = {radius:g}")
    ends = np.array([line[-1] for line in lines])
    charges = charges.detach().double().cpu().numpy()
    return Scene(title or f"{len(charges)} charges, {len(lines)} field lines up to the hemisphere of radius "
                 f"{radius:g}", [
                     hemisphere(radius), Curves([thinned(line) for line in lines], f"{len(lines)} field lines"),
                     Points(ends, "where they cross the hemisphere", "#d62728", 3.0),
                     Points(np.c_[charges, np.zeros(len(charges))], "charges (data) on z = 0", "#000000", 3.0)])


def thinned(path: np.ndarray, points: int = 60) -> np.ndarray:
    """About `points` of a polyline's points (the first and last kept), in float32: enough to draw it."""
    keep = np.unique(np.r_[np.linspace(0, len(path) - 1, points).round().astype(int), len(path) - 1])
    return path[keep].astype(np.float32)


def hemisphere(radius: float, n_meridians: int = 12, n_parallels: int = 4, points: int = 60) -> Curves:
    """A wireframe of the upper hemisphere ||x~|| = radius, z >= 0: meridians and parallels."""
    t = np.linspace(0, math.pi / 2, points)
    lines = []
    for phi in np.linspace(0, 2 * math.pi, n_meridians, endpoint=False):
        lines.append(np.c_[radius * np.sin(t) * math.cos(phi), radius * np.sin(t) * math.sin(phi),
                           radius * np.cos(t)])
    phi = np.linspace(0, 2 * math.pi, 4 * points)
    for theta in np.linspace(0, math.pi / 2, n_parallels + 1)[1:]:
        lines.append(np.c_[radius * math.sin(theta) * np.cos(phi), radius * math.sin(theta) * np.sin(phi),
                           np.full_like(phi, radius * math.cos(theta))])
    return Curves(lines, f"hemisphere of radius {radius:g}", "#b0b0b0", 1.0)


def trajectory_scene(trajectory, data: torch.Tensor | None = None, every: int = 1, title: str = "") -> Scene:
    """Backward ODE trajectories in (x1, x2, log10 z): the prior at the top, the samples landing on the plane.

    trajectory: sequence of (x (B, 2), z (B,)) from sampling.sample(..., return_trajectory=True)
    data:       (M, 2) training points, drawn a factor 2 below the lowest height of the paths (log10 z 0.3 lower)
    every:      draw every `every`-th path
    """
    every = check_int("every", every)
    if data is not None:
        check_tensor("data", data, ndim=2, last_dim=2)
        data = data.detach().cpu().double()
    xs, zs = stacked_trajectory(trajectory)                                # (T, B, 2), (T, B)
    if xs.ndim != 3 or xs.shape[-1] != 2:
        raise ValueError(f"trajectory must hold (x (B, 2), z (B,)) pairs, got x of shape {tuple(xs.shape[1:])}")
    h = torch.log10(zs.clamp_min(1e-12))
    paths = [thinned(np.c_[xs[:, b].numpy(), h[:, b].numpy()]) for b in range(0, xs.shape[1], every)]
    start = np.c_[xs[0, ::every].numpy(), h[0, ::every].numpy()]
    end = np.c_[xs[-1, ::every].numpy(), h[-1, ::every].numpy()]
    items = [Curves(paths, "backward trajectories", "#7f7f7f", 1.0),
             Points(start, "start: the prior", "#d62728", 2.5), Points(end, "end: the samples", "#1f77b4", 2.5)]
    if data is not None:
        floor = float(h.min()) - 0.3                      # a factor 2 below the lowest height: the samples stay visible
        items.insert(0, Points(np.c_[data.numpy(), np.full(len(data), floor)], "training data", "#2ca02c",
                               1.5))
    return Scene(title or f"{len(paths)} backward trajectories, from the prior down to the data", items,
                 height_label="log10 z")


def plotly_figure(scene: Scene):
    """The rotatable figure: one plotly Scatter3d trace per item, the scene's viewpoint as the camera."""
    import plotly.graph_objects as go

    traces = []
    for item in scene.items:
        if isinstance(item, Curves):                     # one trace per item: paths joined with None gaps
            gap = np.full((1, 3), np.nan, dtype=np.float32)
            xyz = np.concatenate([np.vstack([p.astype(np.float32), gap]) for p in item.paths])
            traces.append(go.Scatter3d(x=xyz[:, 0], y=xyz[:, 1], z=xyz[:, 2], mode="lines", name=item.name,
                                       line={"color": item.color, "width": item.width}, connectgaps=False,
                                       hoverinfo="skip"))
        else:
            points = item.points.astype(np.float32)
            traces.append(go.Scatter3d(x=points[:, 0], y=points[:, 1], z=points[:, 2],
                                       mode="markers", name=item.name,
                                       marker={"color": item.color, "size": item.size}))
    elev, azim = math.radians(scene.elev), math.radians(scene.azim)
    eye = {"x": 1.9 * math.cos(elev) * math.cos(azim), "y": 1.9 * math.cos(elev) * math.sin(azim),
           "z": 1.9 * math.sin(elev)}
    fig = go.Figure(traces)
    fig.update_layout(title=scene.title, height=560, margin={"l": 0, "r": 0, "t": 40, "b": 0},
                      legend={"x": 0, "y": 0.95},
                      scene={"xaxis_title": "x1", "yaxis_title": "x2", "zaxis_title": scene.height_label,
                             "aspectmode": "data" if scene.height_label == "z" else "cube", "camera": {"eye": eye}})
    return fig


def still_png(scene: Scene, dpi: int = 100) -> bytes:
    """The same scene drawn by matplotlib from the same viewpoint, as PNG bytes."""
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(7, 5.6))
    ax = fig.add_subplot(projection="3d")
    for item in scene.items:
        if isinstance(item, Curves):
            for i, p in enumerate(item.paths):
                ax.plot(p[:, 0], p[:, 1], p[:, 2], color=item.color, lw=item.width / 2,
                        label=item.name if i == 0 else None)
        else:
            ax.scatter(*item.points.T, color=item.color, s=item.size * 3, label=item.name, depthshade=False)
    ax.view_init(elev=scene.elev, azim=scene.azim)
    if scene.height_label == "z":
        ax.set_aspect("equal")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.set_zlabel(scene.height_label)
    ax.set_title(scene.title, fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def scene_bundle(scene: Scene) -> dict:
    """The output's MIME bundle: the plotly figure, its still as image/png, and a line of text."""
    fig = plotly_figure(scene)
    return {PLOTLY_MIME: json.loads(fig.to_json()), "image/png": base64.b64encode(still_png(scene)).decode(),
            "text/plain": f"<3D view: {scene.title}>"}


def show_scene(scene: Scene) -> None:
    """Display a scene: rotatable in JupyterLab (drag to turn, scroll to zoom), a still where no JavaScript runs."""
    from IPython.display import display

    display(scene_bundle(scene), raw=True)
