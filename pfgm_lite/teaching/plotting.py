"""Matplotlib helpers for the notebooks.

Each function draws on the axes it is given (no pyplot state, no plt.show) and is independent of
the others, so new helpers can be added without touching these.
"""
from __future__ import annotations

import math

import matplotlib
import numpy as np
import torch
from matplotlib import colors as mcolors
from scipy import special, stats

from .. import flows
from ..checks import check_int, check_positive, check_tensor


def _crossing(a: np.ndarray, c: np.ndarray, radius: float) -> np.ndarray:
    """The point between a and c where the norm equals radius (linear interpolation of the norm)."""
    na, nc = np.linalg.norm(a), np.linalg.norm(c)
    return a + (radius - na) / (nc - na) * (c - a)


def _cut_at_radius(path: np.ndarray, radius: float | None) -> list[np.ndarray]:
    """Split a path (T, B, D) into B polylines, each keeping its first stretch inside the ball of `radius`
    (from the start, or from where it enters, to where it leaves), with interpolated end points."""
    lines = []
    for b in range(path.shape[1]):
        line = path[:, b]
        if radius is not None:
            inside = np.linalg.norm(line, axis=1) <= radius
            if not inside.any():
                continue
            first = int(inside.argmax())
            after = inside[first:]
            last = first + (int((~after).argmax()) if not after.all() else len(after))   # one past the stretch
            pieces = [line[first:last]]
            if first > 0:
                pieces.insert(0, _crossing(line[first - 1], line[first], radius)[None])
            if last < len(line):
                pieces.append(_crossing(line[last - 1], line[last], radius)[None])
            line = np.vstack(pieces)
        lines.append(line)
    return lines


def stacked_trajectory(trajectory) -> tuple[torch.Tensor, torch.Tensor]:
    """A sampler's trajectory as two float64 CPU tensors: x (T, B, ...) and the heights z (T, B).

    trajectory: a non-empty sequence of (x (B, ...), z (B,) or a number), as sampling.sample(..., return_trajectory=True)
    returns it
    """
    states = list(trajectory)
    if not states or not all(isinstance(s, (tuple, list)) and len(s) == 2 for s in states):
        raise ValueError("trajectory must be a non-empty sequence of (x, z) pairs, e.g. sampling.sample(..., "
                         f"return_trajectory=True).trajectory; got {type(trajectory).__name__} of {len(states)} items")
    xs = torch.stack([torch.as_tensor(x).detach().cpu().double() for x, _ in states])
    zs = torch.stack([torch.as_tensor(z).detach().cpu().double().expand(xs.shape[1]) for _, z in states])
    return xs, zs


def plot_paths(ax, path, radius: float | None = None, colors=None, lw: float = 0.8, alpha: float = 1.0) -> None:
    """Draw field lines on 2D axes (D = 2: the (x, z) half-plane) or 3D axes (D = 3: (x1, x2, z)).

    path:   (T, B, D) points along B lines (flows.trace_field_lines(..., return_path=True))
    radius: draw only each line's first stretch inside the ball ||x~|| <= radius (None: the whole line)
    colors: one color for all lines, or a sequence of B colors
    """
    path = np.asarray(path.detach().cpu() if isinstance(path, torch.Tensor) else path, dtype=np.float64)
    if path.ndim != 3 or path.shape[2] not in (2, 3):
        raise ValueError(f"path must have shape (T, B, 2) or (T, B, 3), got {path.shape}")
    if colors is None or mcolors.is_color_like(colors):
        colors = [colors] * path.shape[1]
    for line, color in zip(_cut_at_radius(path, radius), colors):
        ax.plot(*line.T, lw=lw, alpha=alpha, color=color)


def _even_flux_starts(charges: torch.Tensor, n_lines: int, z0: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Start points at height z0 carrying equal flux: for each of the M charges, K = n_lines // M launch
    angles phi_k evenly spread in (-pi/2, pi/2), offset z0 tan(phi_k) (quantiles of the Poisson kernel, N = 1).
    returns: x0 (M K, 1) and the index of the charge of each line (M K,)."""
    m = charges.shape[0]
    k = max(1, n_lines // m)
    phi = (torch.arange(k, dtype=charges.dtype) + 0.5) / k * math.pi - math.pi / 2
    x0 = (charges + z0 * torch.tan(phi)[None, :]).reshape(-1, 1)
    return x0, torch.arange(m).repeat_interleave(k)


def plot_field_lines_2d(ax, charges: torch.Tensor, n_lines: int = 60, radius: float = 4.0, z0: float = 1e-2,
                        steps_per_unit: int = 8, cmap: str = "viridis", show_crossings: bool = True):
    """Field lines of unit charges on a line (N = 1) in the (x, z) half-plane, up to a semicircle.

    charges: (M, 1) positions on the line z = 0
    n_lines: lines in all, n_lines // M per charge, launched at angles that split each charge's flux
             into equal parts (so the density of lines is the density of flux)
    radius:  the semicircle ||(x, z)|| = radius where the lines stop; crossings are marked on it
    returns: flows.Crossings of the lines (points (B, 2), polar_angle (B,))
    """
    charges = check_tensor("charges", charges, ndim=2, last_dim=1).detach().cpu().double()
    check_int("n_lines", n_lines)
    radius = check_positive("radius", radius)
    x0, owner = _even_flux_starts(charges, n_lines, z0)
    if (x0.abs() + z0 >= radius).any():
        raise ValueError(f"radius must exceed the charges' distance from the origin: radius = {radius}, "
                         f"max |charge| = {charges.abs().max().item():.4g}")
    steps = max(1, math.ceil(steps_per_unit * math.log(radius / z0)))
    _, path = flows.trace_field_lines(x0, z0, radius, charges, steps=steps, return_path=True)
    crossings = flows.hemisphere_crossings(charges, radius, x0, z0=z0, steps_per_unit=steps_per_unit)
    palette = matplotlib.colormaps[cmap](np.linspace(0.1, 0.9, charges.shape[0]))
    plot_paths(ax, path, radius=radius, colors=palette[owner.numpy()], lw=0.8)
    phi = np.linspace(0, np.pi, 200)
    ax.plot(radius * np.cos(phi), radius * np.sin(phi), "k--", lw=1)
    if show_crossings:
        ax.scatter(crossings.points[:, 0], crossings.points[:, 1], s=10, color="crimson", zorder=3,
                   label="crossings")
    ax.scatter(charges[:, 0], torch.zeros(len(charges)), s=40, color=palette, edgecolor="k", zorder=4,
               label="charges")
    ax.axhline(0, color="gray", lw=0.5)
    ax.set_aspect("equal")
    ax.set_xlim(-1.05 * radius, 1.05 * radius)
    ax.set_ylim(-0.03 * radius, 1.05 * radius)
    ax.set_xlabel("$x$")
    ax.set_ylabel("$z$")
    return crossings


def uniform_polar_angle_pdf(theta, n: int) -> np.ndarray:
    """Density of the polar angle of a uniform point on the upper hemisphere of S^n (in R^{n+1}).

    theta: array-like in [0, pi/2]; returns 2 sin^{n-1}(theta) / B(n/2, 1/2)
    (the derivative of flows.uniform_polar_angle_cdf)
    """
    check_int("n", n)
    theta = np.asarray(theta, dtype=np.float64)
    return 2 * np.sin(theta) ** (n - 1) / special.beta(n / 2, 0.5)


def plot_polar_angle_histogram(ax, theta, n: int, bins: int = 24, signed: bool = False, color: str = "C0",
                               label: str | None = "crossings") -> None:
    """Histogram of crossing angles against the law of a uniform point on the hemisphere.

    theta:  (B,) polar angles from the +z axis in [0, pi/2]; with `signed` (N = 1 only) angles in
            (-pi/2, pi/2), atan2(x, z), whose uniform law is flat, 1/pi
    n:      data dimension N (the hemisphere is the upper half of S^N in R^{N+1});
            uniform law: p(theta) = 2 sin^{N-1}(theta) / B(N/2, 1/2)
    """
    theta = np.asarray(theta.detach().cpu() if isinstance(theta, torch.Tensor) else theta, dtype=np.float64)
    check_int("n", n)
    if signed and n != 1:
        raise ValueError(f"signed angles only describe the N = 1 half-plane, got n = {n}")
    lo = -np.pi / 2 if signed else 0.0
    ax.hist(theta, bins=bins, range=(lo, np.pi / 2), density=True, color=color, alpha=0.6, label=label)
    grid = np.linspace(lo, np.pi / 2, 200)
    density = np.full_like(grid, 1 / np.pi) if signed else uniform_polar_angle_pdf(grid, n)
    ax.plot(grid, density, "k", lw=1.5, label="uniform on the hemisphere")
    ax.set_xlim(lo, np.pi / 2)
    ax.set_xlabel(r"signed angle $\theta$ from the $z$ axis" if signed else r"polar angle $\theta$")
    ax.set_ylabel("density")


def plot_radius_histogram(ax, x, height: float, bins: int = 40, color: str = "C0",
                          label: str | None = "samples") -> None:
    """Histogram of log10 ||x|| for points x on the plane z = height, against the Poisson kernel's radius law.

    x:      (B, N) points (radially projected hemisphere crossings, or prior samples)
    height: z_max; exact law R^2 / height^2 ~ BetaPrime(N/2, 1/2), drawn as the density of log10 R
    A log axis shows the heavy tail: P(R > r) ~ 2 height / (B(N/2, 1/2) r) for r >> height.
    """
    x = check_tensor("x", x, ndim=2, min_last_dim=1)
    height = check_positive("height", height)
    n = x.shape[1]
    log_r = torch.log10(x.detach().double().norm(dim=1).clamp_min(1e-300)).cpu().numpy()
    lo, hi = np.quantile(log_r, [0.001, 0.999])
    lo, hi = min(lo, math.log10(height) - 2.5), max(hi, math.log10(height) + 2.5)
    ax.hist(log_r, bins=bins, range=(lo, hi), density=True, color=color, alpha=0.6, label=label)
    grid = np.linspace(lo, hi, 300)
    t = (10.0**grid / height) ** 2                       # R^2 / h^2
    ax.plot(grid, stats.betaprime(n / 2, 0.5).pdf(t) * t * 2 * math.log(10), "k", lw=1.5,
            label="Poisson kernel (exact)")
    ax.axvline(math.log10(height), color="gray", ls=":", lw=1)
    ax.set_xlabel(r"$\log_{10} R$, $R = \|x\|$ on the plane $z = z_{max}$")
    ax.set_ylabel("density")


def image_grid(images: torch.Tensor, nrow: int = 8, padding: int = 2, pad_value: float = 0.0) -> torch.Tensor:
    """Tile images (B, C, H, W) into one image (C, rows * (H + padding) + padding, cols * (W + padding) + padding).

    cols = min(nrow, B), rows = ceil(B / cols); image k goes to row k // cols, column k % cols, with `padding` pixels
    of `pad_value` around every image. The layout of torchvision.utils.make_grid (a test compares the two), without
    importing torchvision (~160 MiB, benchmarks/import_memory.py).
    """
    if images.dim() != 4:
        raise ValueError(f"images must have shape (B, C, H, W), got {tuple(images.shape)}")
    if nrow < 1 or padding < 0:
        raise ValueError(f"nrow must be >= 1 and padding >= 0, got nrow={nrow}, padding={padding}")
    b, c, h, w = images.shape
    cols = min(nrow, b)
    rows = -(-b // cols)
    grid = images.new_full((c, rows * (h + padding) + padding, cols * (w + padding) + padding), pad_value)
    for k in range(b):
        top, left = (k // cols) * (h + padding) + padding, (k % cols) * (w + padding) + padding
        grid[:, top:top + h, left:left + w] = images[k]
    return grid


def show_images(images: torch.Tensor, nrow: int = 10, title: str | None = None, ax=None, cmap: str = "gray_r"):
    """Draw a grid of images in [-1, 1] (image_grid, one pixel of white between images); returns the axes.

    images: (B, C, H, W); one channel is drawn with `cmap` (ink dark on white), three as RGB.
    """
    import matplotlib.pyplot as plt

    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must have shape (B, 1 or 3, H, W), got {tuple(images.shape)}")
    grid = image_grid(images.detach().cpu().clamp(-1, 1) * 0.5 + 0.5, nrow=nrow, padding=1, pad_value=1.0)
    if ax is None:
        rows = -(-len(images) // nrow)
        ax = plt.subplots(figsize=(min(nrow, len(images)) * 0.6, rows * 0.6))[1]
    if images.shape[1] == 1:
        ax.imshow(grid[0].numpy(), cmap=cmap, vmin=0, vmax=1)
    else:
        ax.imshow(grid.permute(1, 2, 0).numpy())
    ax.axis("off")
    if title:
        ax.set_title(title)
    return ax
