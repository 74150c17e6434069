"""Facts about pfgm_lite/plotting.py: what the helpers draw and return."""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from scipy import integrate  # noqa: E402

from pfgm_lite import flows  # noqa: E402
from pfgm_lite.teaching import plotting  # noqa: E402


@pytest.fixture
def ax():
    fig, ax = plt.subplots()
    yield ax
    plt.close(fig)


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_uniform_polar_angle_pdf_is_the_derivative_of_the_cdf(n):
    total, _ = integrate.quad(lambda t: plotting.uniform_polar_angle_pdf(t, n), 0, math.pi / 2)
    assert total == pytest.approx(1.0, abs=1e-9)
    theta = np.linspace(0.1, 1.4, 7)
    h = 1e-6
    numeric = (flows.uniform_polar_angle_cdf(theta + h, n) - flows.uniform_polar_angle_cdf(theta - h, n)) / (2 * h)
    # central difference: truncation ~h^2 = 1e-12, rounding ~1e-15 / h = 1e-9 of a density ~1
    np.testing.assert_allclose(plotting.uniform_polar_angle_pdf(theta, n), numeric, rtol=1e-6)


def test_plot_paths_keeps_the_stretch_inside_the_ball(ax):
    t = torch.linspace(0, 10, 101)
    outward = torch.stack([t, t], dim=1)            # leaves the ball of radius 5 at t = 5 / sqrt(2)
    inward = outward.flip(0)                        # comes in from outside
    path = torch.stack([outward, inward], dim=1)    # (101, 2, 2)
    plotting.plot_paths(ax, path, radius=5.0, colors=["C0", "C1"])
    first, second = (np.column_stack(line.get_data()) for line in ax.lines)
    assert np.linalg.norm(first[-1]) == pytest.approx(5.0) and np.linalg.norm(first[0]) == 0
    assert np.linalg.norm(second[0]) == pytest.approx(5.0) and np.linalg.norm(second[-1]) == 0
    with pytest.raises(ValueError, match=r"path must have shape \(T, B, 2\) or \(T, B, 3\)"):
        plotting.plot_paths(ax, torch.zeros(5, 2, 4))


def test_field_lines_of_one_charge_cross_at_their_launch_angles(ax):
    crossings = plotting.plot_field_lines_2d(ax, torch.zeros(1, 1), n_lines=12, radius=5.0)
    signed = torch.atan2(crossings.points[:, 0], crossings.points[:, 1])
    launch = (torch.arange(12, dtype=torch.float64) + 0.5) / 12 * math.pi - math.pi / 2
    # x = z0 tan(phi) at height z0: a ray at angle phi from the z axis
    torch.testing.assert_close(signed, launch, atol=1e-5, rtol=0)
    torch.testing.assert_close(crossings.points.norm(dim=1), torch.full((12,), 5.0, dtype=torch.float64))
    with pytest.raises(ValueError, match="radius must exceed the charges' distance from the origin"):
        plotting.plot_field_lines_2d(ax, torch.tensor([[3.0]]), radius=2.0)


def test_radius_histogram_density_integrates_to_one(ax):
    x = torch.randn(500, 2, generator=torch.Generator().manual_seed(0))
    plotting.plot_radius_histogram(ax, x, height=1.0)
    grid, density = ax.lines[0].get_data()
    assert np.trapezoid(density, grid) == pytest.approx(1.0, abs=0.01)


def test_polar_angle_histogram_rejects_signed_angles_above_n_1(ax):
    with pytest.raises(ValueError, match="signed angles only describe the N = 1 half-plane"):
        plotting.plot_polar_angle_histogram(ax, np.zeros(3), 2, signed=True)


def test_show_images_draws_a_grid_and_rejects_bad_shapes():
    fig, ax = plt.subplots()
    out = plotting.show_images(torch.zeros(6, 1, 8, 8), nrow=3, ax=ax, title="t")
    assert out is ax and ax.get_title() == "t" and len(ax.images) == 1
    assert ax.images[0].get_array().shape == (2 * 9 + 1, 3 * 9 + 1)   # make_grid with padding 1
    plt.close(fig)
    with pytest.raises(ValueError, match=r"\(B, 1 or 3, H, W\)"):
        plotting.show_images(torch.zeros(6, 8, 8))


@pytest.mark.parametrize("b, c, nrow, padding, pad_value", [(6, 3, 3, 1, 1.0), (7, 3, 3, 2, 0.0), (5, 1, 8, 0, 0.5),
                                                             (10, 1, 10, 1, 1.0)])
def test_image_grid_has_make_grid_layout(b, c, nrow, padding, pad_value):
    from torchvision.utils import make_grid

    images = torch.rand(b, c, 5, 4, generator=torch.Generator().manual_seed(b))
    mine = plotting.image_grid(images, nrow=nrow, padding=padding, pad_value=pad_value)
    theirs = make_grid(images, nrow=nrow, padding=padding, pad_value=pad_value)
    assert torch.equal(mine, theirs[:c])          # make_grid repeats a single channel three times


def test_image_grid_comparison_catches_a_wrong_layout():
    from torchvision.utils import make_grid

    images = torch.rand(6, 3, 5, 4, generator=torch.Generator().manual_seed(0))
    theirs = make_grid(images, nrow=3, padding=1)
    column_major = images.reshape(3, 2, 3, 5, 4).transpose(0, 1).reshape(6, 3, 5, 4)   # fills columns first
    assert not torch.equal(plotting.image_grid(column_major, nrow=3, padding=1), theirs)
    assert plotting.image_grid(images, nrow=3, padding=1).shape == theirs.shape


def test_image_grid_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"images must have shape \(B, C, H, W\), got \(6, 8, 8\)"):
        plotting.image_grid(torch.zeros(6, 8, 8))
    with pytest.raises(ValueError, match="nrow must be >= 1 and padding >= 0, got nrow=0"):
        plotting.image_grid(torch.zeros(6, 1, 8, 8), nrow=0)
