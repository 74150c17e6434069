"""Animations of the backward flow as GIFs: they play in JupyterLab, on the book's pages and in GitHub's viewer.

GitHub's notebook viewer runs no JavaScript and shows no video, and it shows an output's image/png but not (reliably)
image/gif. So `show_gif` publishes the GIF's bytes under image/png: every browser decodes an image by its content
(the GIF89a signature), not by the declared type, so the animation plays in all three places (the browser test
checks JupyterLab and the book). The frames are drawn by matplotlib and joined by Pillow (matplotlib's dependency).
"""
from __future__ import annotations

import base64
import io

import numpy as np
import torch

from ..checks import check_int, check_positive, check_tensor
from .plotting import image_grid, stacked_trajectory

GIF_SIGNATURE = b"GIF89a"


def gif_from_figures(draw, n_frames: int, figsize=(4.2, 4.2), dpi: int = 72, ms_per_frame: int = 90,
                     hold_last: int = 12) -> bytes:
    """A looping GIF of `n_frames` frames: `draw(ax, k)` draws frame k on fresh axes.

    hold_last: how many extra frames the last one stays (so the eye sees where the flow ends)
    returns:   the GIF's bytes (starting with GIF89a)
    """
    import matplotlib.pyplot as plt
    from PIL import Image

    check_int("n_frames", n_frames)
    frames = []
    fig, ax = plt.subplots(figsize=figsize, dpi=dpi)
    try:
        for k in range(n_frames):
            ax.clear()
            draw(ax, k)
            fig.canvas.draw()
            rgba = np.asarray(fig.canvas.buffer_rgba())
            frames.append(Image.fromarray(rgba[..., :3]).quantize(colors=64, method=Image.Quantize.MEDIANCUT))
    finally:
        plt.close(fig)
    frames += [frames[-1]] * hold_last
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=ms_per_frame, loop=0,
                   optimize=True)
    return buffer.getvalue()


def flow_gif(trajectory, data: torch.Tensor | None = None, lim: float | None = None, n_points: int = 500) -> bytes:
    """The backward flow of 2D samples, one frame per step: the points and their height z (median) in the title.

    trajectory: sequence of (x (B, 2), z (B,)) from sampling.sample(..., return_trajectory=True)
    data:       (M, 2) training points, drawn faintly as the target
    lim:        the axes' half-width; None follows the flow (1.1 times the frame's 95th percentile of |x_i|, at
                least 1.1 times the data's largest |x_i|): the prior is heavy-tailed, so a fixed box shows little
    """
    if data is not None:
        check_tensor("data", data, ndim=2, last_dim=2)
    if lim is not None:
        lim = check_positive("lim", lim)
    check_int("n_points", n_points)
    xs, zs = stacked_trajectory(trajectory)
    if xs.ndim != 3 or xs.shape[-1] != 2:
        raise ValueError(f"trajectory must hold (x (B, 2), z (B,)) pairs, got x of shape {tuple(xs.shape[1:])}")
    xs = xs[:, :n_points].numpy()                                                     # (T, B, 2)
    heights = zs.median(dim=1).values.tolist()
    target = None if data is None else data.detach().cpu().double().numpy()
    floor = 1.0 if target is None else max(1e-3, float(np.abs(target).max()))
    limits = [lim or 1.1 * max(floor, float(np.quantile(np.abs(x), 0.95))) for x in xs]

    def draw(ax, k):
        if target is not None:
            ax.scatter(*target.T, s=2, color="0.8", label="training data")
        ax.scatter(*xs[k].T, s=3, color="C0", label="samples")
        ax.set_xlim(-limits[k], limits[k])
        ax.set_ylim(-limits[k], limits[k])
        ax.set_aspect("equal")
        ax.set_xlabel("$x_1$")
        ax.set_ylabel("$x_2$")
        ax.set_title(f"step {k} of {len(xs) - 1}: median z = {heights[k]:.3g}", fontsize=10)
        ax.legend(loc="upper right", fontsize=7)

    return gif_from_figures(draw, len(xs))


def image_flow_gif(trajectory, nrow: int = 4) -> bytes:
    """Images along the backward flow, one grid per step (e.g. digits from the prior down to z ~ 0).

    trajectory: sequence of (x (B, C, H, W), z (B,)) from sampling.sample(..., return_trajectory=True); every image
                of every frame is scaled by its own largest |value| (far up, |x| is of the order of z)
    """
    check_int("nrow", nrow)
    xs, zs = stacked_trajectory(trajectory)                                           # (T, B, C, H, W), (T, B)
    if xs.ndim != 5:
        raise ValueError(f"trajectory must hold (x (B, C, H, W), z (B,)) pairs, got x of shape {tuple(xs.shape[1:])}")
    scale = xs.abs().amax(dim=(2, 3, 4), keepdim=True).clamp_min(1e-12)
    grids = [image_grid(frame, nrow=nrow, pad_value=-1.0) for frame in xs / scale]
    heights = zs.median(dim=1).values.tolist()

    def draw(ax, k):
        ax.imshow(grids[k][0].numpy(), cmap="gray_r", vmin=-1, vmax=1)
        ax.set_axis_off()
        ax.set_title(f"step {k} of {len(grids) - 1}: median z = {heights[k]:.3g}", fontsize=10)

    height, width = grids[0].shape[-2:]
    return gif_from_figures(draw, len(grids), figsize=(4.0, 4.0 * height / width + 0.45))   # room for the title


def show_gif(gif: bytes, text: str = "an animation") -> None:
    """Display a GIF so that it plays in JupyterLab, GitHub's viewer and the book (see the module's docstring)."""
    from IPython.display import display

    if not gif.startswith(GIF_SIGNATURE):
        raise ValueError(f"gif must be the bytes of a GIF (starting with {GIF_SIGNATURE!r}), got {gif[:6]!r}")
    display({"image/png": base64.b64encode(gif).decode(), "text/plain": f"<GIF: {text}>"}, raw=True)
