"""The 3D view of the augmented space (teaching.view3d) and the flow animations (teaching.animation)."""
from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from pfgm_lite import flows
from pfgm_lite.teaching import animation, view3d


@pytest.fixture(scope="module")
def lines():
    charges = torch.tensor([[-1.0, 0.0], [1.0, 0.5], [0.2, -1.0]], dtype=torch.float64)
    starts = flows.flux_start_points(charges, 40, 1e-2, generator=torch.Generator().manual_seed(0))
    _, path = flows.trace_field_lines(starts, 1e-2, 3.0, charges, steps=200, return_path=True)
    return charges, path


def test_field_line_scene_cuts_every_line_on_the_hemisphere(lines):
    charges, path = lines
    scene = view3d.field_line_scene(charges, path, radius=3.0)
    hemisphere, curves, crossings, drawn = scene.items
    assert len(curves.paths) == 40 and crossings.points.shape == (40, 3)
    # a crossing is interpolated on the chord between two RK4 points, inside the sphere by at most the sagitta
    # ds^2 / (8 R): ds ~ 3 * log(300) / 200 = 0.086 near the top, so 3e-4, i.e. 1e-4 of R
    np.testing.assert_allclose(np.linalg.norm(crossings.points, axis=1), 3.0, rtol=1e-4)
    assert (crossings.points[:, 2] > 0).all()
    assert all(np.linalg.norm(p, axis=1).max() <= 3.0 * (1 + 1e-6) for p in curves.paths)
    np.testing.assert_array_equal(drawn.points[:, :2], charges.numpy().astype(drawn.points.dtype))
    assert (drawn.points[:, 2] == 0).all()
    # the hemisphere's wireframe lies on the sphere, above the plane
    for p in hemisphere.paths:
        np.testing.assert_allclose(np.linalg.norm(p, axis=1), 3.0, rtol=1e-12)
        assert (p[:, 2] >= -1e-12).all()


def test_field_line_scene_refuses_bad_input_before_any_work(lines):
    charges, path = lines
    with pytest.raises(ValueError, match="charges"):
        view3d.field_line_scene(charges[:, :1], path, 3.0)
    with pytest.raises(ValueError, match="path"):
        view3d.field_line_scene(charges, path[..., :2], 3.0)
    with pytest.raises(ValueError, match="radius"):
        view3d.field_line_scene(charges, path, -1.0)
    with pytest.raises(ValueError, match="no field line"):
        view3d.field_line_scene(charges, path + 10.0, 3.0)


def test_the_bundle_holds_a_plotly_figure_of_the_same_points_and_a_png_still(lines):
    charges, path = lines
    scene = view3d.field_line_scene(charges, path, radius=3.0)
    bundle = view3d.scene_bundle(scene)
    assert set(bundle) == {view3d.PLOTLY_MIME, "image/png", "text/plain"}
    json.dumps(bundle)                                                   # what the kernel sends must be JSON
    figure = view3d.plotly_figure(scene)
    assert [t.type for t in figure.data] == ["scatter3d"] * 4
    crossings = figure.data[2]
    np.testing.assert_allclose(np.c_[crossings.x, crossings.y, crossings.z], scene.items[2].points)
    lines_trace = figure.data[1]
    assert np.isnan(np.asarray(lines_trace.x, dtype=float)).sum() == 40    # one gap after each of the 40 lines
    lines_json = bundle[view3d.PLOTLY_MIME]["data"][1]["x"]
    assert lines_json["dtype"] == "f4", lines_json["dtype"]             # float32: half the bytes of float64
    png = base64.b64decode(bundle["image/png"])
    assert png.startswith(b"\x89PNG") and Image.open(io.BytesIO(png)).size[0] > 300


def test_trajectory_scene_puts_log10_z_on_the_height_axis():
    z = [torch.full((6,), 10.0 ** (1 - k)) for k in range(5)]             # 10, 1, 0.1, 0.01, 0.001
    traj = [(torch.full((6, 2), float(k)), zk) for k, zk in enumerate(z)]
    scene = view3d.trajectory_scene(traj, data=torch.zeros(3, 2), every=2)
    data, curves, start, end = scene.items
    assert scene.height_label == "log10 z" and len(curves.paths) == 3
    np.testing.assert_allclose(curves.paths[0][:, 2], [1, 0, -1, -2, -3], atol=1e-6)
    np.testing.assert_allclose(end.points[:, :2], 4.0)
    np.testing.assert_allclose(data.points[:, 2], -3.3, atol=1e-6)
    with pytest.raises(ValueError, match="trajectory"):
        view3d.trajectory_scene([(torch.zeros(6, 3), zk) for zk in z])


def gif_frames(gif: bytes) -> list[np.ndarray]:
    image = Image.open(io.BytesIO(gif))
    frames = []
    for k in range(image.n_frames):
        image.seek(k)
        frames.append(np.asarray(image.convert("L"), dtype=float))
    return frames


def test_flow_gif_has_one_frame_per_step_that_shows_the_points_moving():
    gen = torch.Generator().manual_seed(0)
    start = torch.randn(200, 2, generator=gen) * 3
    traj = [(start * (1 - k / 10), torch.full((200,), 10.0 / (k + 1))) for k in range(11)]
    gif = animation.flow_gif(traj, data=torch.zeros(10, 2))
    assert gif.startswith(animation.GIF_SIGNATURE)
    frames = gif_frames(gif)
    assert len(frames) == 11                                  # the held last frame is merged into one longer frame
    assert all(np.abs(a - b).mean() > 0.1 for a, b in zip(frames, frames[1:]))   # every step changes the picture
    assert Image.open(io.BytesIO(gif)).info.get("loop") == 0                       # loops for ever


def test_image_flow_gif_ends_on_the_last_state():
    final = torch.zeros(4, 1, 28, 28)
    final[:, :, 10:18, 10:18] = 1.0                           # a white square on black
    traj = [(torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(k)), torch.ones(4)) for k in range(5)]
    traj.append((final, torch.full((4,), 1e-3)))
    frames = gif_frames(animation.image_flow_gif(traj, nrow=2))
    assert len(frames) == 6
    last = frames[-1]
    assert last.std() > 0.1 and np.abs(last - frames[-2]).mean() > 1.0
    with pytest.raises(ValueError, match="trajectory"):
        animation.image_flow_gif([(torch.zeros(4, 784), torch.ones(4))])


def test_show_gif_refuses_bytes_that_are_not_a_gif():
    png = base64.b64decode(view3d.scene_bundle(view3d.Scene("empty", [view3d.Points(np.zeros((1, 3)), "a")]))[
        "image/png"])
    with pytest.raises(ValueError, match="gif must be the bytes of a GIF"):
        animation.show_gif(png)


@pytest.mark.parametrize("call, message", [
    (lambda: view3d.trajectory_scene([(torch.zeros(4, 2), 1.0)], every=0), "every must be"),
    (lambda: view3d.trajectory_scene([(torch.zeros(4, 2), 1.0)], data=torch.zeros(3, 3)), "data"),
    (lambda: view3d.trajectory_scene([]), "trajectory must be a non-empty sequence"),
    (lambda: animation.flow_gif([]), "trajectory must be a non-empty sequence"),
    (lambda: animation.flow_gif([(torch.zeros(4, 2), 1.0)], data=torch.zeros(3, 3)), "data"),
    (lambda: animation.flow_gif([(torch.zeros(4, 2), 1.0)], lim=0.0), "lim must be finite and > 0"),
    (lambda: animation.image_flow_gif([(torch.zeros(4, 2), 1.0)]), "trajectory must hold"),
])
def test_the_views_refuse_bad_input_before_drawing(call, message):
    with pytest.raises(ValueError, match=message):
        call()
