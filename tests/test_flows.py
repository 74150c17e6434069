"""Facts about pfgm_lite/flows.py: field lines, the flux start law, uniform hemisphere crossings."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from pfgm_lite import flows, physics

F64 = torch.float64


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def ring(n: int, g: torch.Generator, radius: float = 1.0) -> torch.Tensor:
    angle = 2 * math.pi * torch.rand(n, generator=g, dtype=F64)
    return radius * torch.stack([angle.cos(), angle.sin()], 1)


def uniform_hemisphere(n: int, dim: int, g: torch.Generator) -> torch.Tensor:
    """(n, dim + 1) uniform points on the upper unit hemisphere of R^{dim+1}."""
    u = torch.randn(n, dim + 1, generator=g, dtype=F64)
    u[:, -1] = u[:, -1].abs()
    return u / u.norm(dim=1, keepdim=True)


def test_augment():
    x = torch.arange(6, dtype=F64).reshape(3, 2)
    torch.testing.assert_close(flows.augment(x, 0.5)[:, -1], torch.full((3,), 0.5, dtype=F64))
    z = torch.tensor([1.0, 2.0, 3.0], dtype=F64)
    out = flows.augment(x, z)
    assert out.shape == (3, 3)
    torch.testing.assert_close(out[:, :2], x)
    torch.testing.assert_close(out[:, 2], z)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_velocity_is_z_times_ex_over_ez(n):
    g = gen(n)
    data = torch.randn(20, n, generator=g, dtype=F64)
    x = torch.randn(15, n, generator=g, dtype=F64)
    z = 0.1 + torch.rand(15, generator=g, dtype=F64)
    e = physics.poisson_field(flows.augment(x, z), flows.augment(data, 0.0))
    assert (e[:, -1] > 0).all()                       # the field points up above the plane
    torch.testing.assert_close(flows.field_line_velocity(x, z, data), z[:, None] * e[:, :-1] / e[:, -1:])


def test_field_lines_of_one_charge_are_rays():
    charge = torch.tensor([[0.5, -0.25]], dtype=F64)
    x0 = charge + torch.tensor([[0.1, 0.0], [0.0, -0.3], [0.2, 0.2]], dtype=F64)
    z0 = 0.2
    x1, path = flows.trace_field_lines(x0, z0, 7.0, charge, steps=40, return_path=True)
    assert path.shape == (41, 3, 3)
    torch.testing.assert_close(path[0, :, :2], x0)
    torch.testing.assert_close(path[-1, :, 2], torch.full((3,), 7.0, dtype=F64))
    torch.testing.assert_close(x1, path[-1, :, :2])
    # (x - y) / z is constant along a line; RK4 with 40 steps of 0.09 in log z is good to ~1e-6
    torch.testing.assert_close(x1 - charge, (x0 - charge) * 7.0 / z0, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("n", [1, 2])
def test_up_then_down_returns_to_the_start(n):
    g = gen(20 + n)
    data = torch.randn(30, n, generator=g, dtype=F64)
    x0 = torch.randn(25, n, generator=g, dtype=F64)
    z0 = 0.05
    up = flows.trace_field_lines(x0, z0, 40.0, data, steps=120)
    assert (up - x0).norm(dim=1).max() > 1.0          # the lines went somewhere
    back = flows.trace_field_lines(up, 40.0, z0, data, steps=120)
    torch.testing.assert_close(back, x0, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("n", [1, 2, 4])
def test_flux_start_points_of_one_charge_follow_the_poisson_kernel(n):
    z0 = 0.3
    charge = torch.full((1, n), 2.0, dtype=F64)
    x = flows.flux_start_points(charge, 3000, z0, generator=gen(30 + n))
    assert x.shape == (3000, n) and x.dtype == F64
    ratio = (((x - charge) ** 2).sum(1) / z0**2).numpy()
    assert stats.kstest(ratio, stats.betaprime(n / 2, 0.5).cdf).pvalue > 1e-3
    capped = flows.flux_start_points(charge, 500, z0, generator=gen(1), max_offset=0.5)
    assert (capped - charge).norm(dim=1).max() <= 0.5


def test_flux_start_points_pick_charges_evenly():
    data = torch.tensor([[-10.0], [10.0]], dtype=F64)
    x = flows.flux_start_points(data, 2000, 0.01, generator=gen(2), max_offset=1.0)
    left = (x[:, 0] < 0).sum().item()
    assert abs(left - 1000) < 4 * math.sqrt(500)


def test_crossings_lie_on_the_hemisphere_and_match_rays():
    charge = torch.zeros(1, 2, dtype=F64)
    x0 = torch.tensor([[0.01, 0.0], [0.0, 0.02], [-0.03, 0.03]], dtype=F64)
    z0 = 0.01
    cr = flows.hemisphere_crossings(charge, 50.0, x0, z0=z0, steps_per_unit=16)
    torch.testing.assert_close(cr.points.norm(dim=1), torch.full((3,), 50.0, dtype=F64))
    # a single charge: straight rays, the polar angle is the launch angle
    expected = torch.atan2(x0.norm(dim=1), torch.tensor(z0, dtype=F64))
    torch.testing.assert_close(cr.polar_angle, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("radius", [100.0, 50.0, 30.0])
@pytest.mark.parametrize("z0", [0.01, 0.1])
def test_a_line_straight_above_a_charge_crosses_at_the_pole(radius, z0):
    # x stays 0 and z reaches the radius only up to rounding: the line must still count as crossed
    cr = flows.hemisphere_crossings(torch.zeros(1, 1), radius, torch.zeros(1, 1), z0=z0)
    # float32: the crossing's z / radius is 1 up to a few roundings, delta <= 4 eps32, and arccos(1 - delta) =
    # sqrt(2 delta) <= 1e-3; a line that did not count as crossed would stay at 0 and report pi / 2
    assert 0.0 <= cr.polar_angle.item() <= math.sqrt(8 * torch.finfo(torch.float32).eps)
    assert cr.points[0, 1].item() == pytest.approx(radius, rel=4 * torch.finfo(torch.float32).eps)
    assert cr.points[0, 0].item() == 0.0   # x stays exactly 0: E_hat_x = x - 0 for a charge at the origin


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_uniform_polar_angle_cdf(n):
    theta = torch.arccos(uniform_hemisphere(4000, n, gen(40 + n))[:, -1])
    assert stats.kstest(flows.uniform_polar_angle_cdf(theta, n), "uniform").pvalue > 1e-3
    grid = np.linspace(0, np.pi / 2, 7)
    if n == 1:   # the angle itself is uniform
        np.testing.assert_allclose(flows.uniform_polar_angle_cdf(grid, 1), grid / (np.pi / 2), atol=1e-14)
    if n == 2:   # cos(theta) is uniform (Archimedes)
        np.testing.assert_allclose(flows.uniform_polar_angle_cdf(grid, 2), 1 - np.cos(grid), atol=1e-14)


def test_crossings_are_uniform_far_away_but_not_near_the_data():
    g = gen(0)
    data = ring(200, g)                                        # N = 2: charges on the unit circle
    x0 = flows.flux_start_points(data, 300, 0.01, g, max_offset=0.1)
    far = flows.hemisphere_crossings(data, 100.0, x0, z0=0.01)
    near = flows.hemisphere_crossings(data, 1.25, x0, z0=0.01)
    p_far = stats.kstest(flows.uniform_polar_angle_cdf(far.polar_angle, 2), "uniform").pvalue
    p_near = stats.kstest(flows.uniform_polar_angle_cdf(near.polar_angle, 2), "uniform").pvalue
    assert p_far > 0.01, p_far
    assert p_near < 1e-6, p_near


@pytest.mark.parametrize("n", [1, 2, 3])
def test_projected_uniform_hemisphere_follows_the_poisson_kernel(n):
    z_max = 5.0
    x = flows.project_to_plane(5.0 * uniform_hemisphere(3000, n, gen(50 + n)), z_max)
    ratio = ((x**2).sum(1) / z_max**2).numpy()
    assert stats.kstest(ratio, stats.betaprime(n / 2, 0.5).cdf).pvalue > 1e-3
    assert stats.kstest(ratio, stats.betaprime(n / 2 + 0.5, 0.5).cdf).pvalue < 1e-4


def test_errors_name_the_argument():
    data = torch.zeros(5, 2)
    x0 = torch.ones(3, 2)
    with pytest.raises(ValueError, match=r"data must have 2 dimensions, got shape \(5,\)"):
        flows.trace_field_lines(x0, 1.0, 2.0, torch.zeros(5))
    with pytest.raises(ValueError, match=r"x0 must have last dimension 2, got shape \(3, 3\)"):
        flows.trace_field_lines(torch.ones(3, 3), 1.0, 2.0, data)
    with pytest.raises(ValueError, match="z0 must be finite and > 0, got min z0 = -1"):
        flows.trace_field_lines(x0, torch.tensor([1.0, -1.0, 2.0]), 2.0, data)
    with pytest.raises(ValueError, match="z0 must be finite and > 0, got min z0 = 0"):
        flows.trace_field_lines(x0, 0.0, 2.0, data)
    with pytest.raises(ValueError, match="z1 must be finite and > 0, got -2.0"):
        flows.trace_field_lines(x0, 1.0, -2.0, data)
    with pytest.raises(ValueError, match="steps must be >= 1, got 0"):
        flows.trace_field_lines(x0, 1.0, 2.0, data, steps=0)
    bad = data.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="data must be finite, got 1 NaN/inf entries"):
        flows.flux_start_points(bad, 10, 0.1)
    with pytest.raises(TypeError, match="data must be a torch.Tensor, got list"):
        flows.flux_start_points([[0.0, 0.0]], 10, 0.1)
    with pytest.raises(ValueError, match="z0 must be finite and > 0, got 0"):
        flows.flux_start_points(data, 10, 0)
    with pytest.raises(ValueError, match="radius must exceed the start points' norm"):
        flows.hemisphere_crossings(data, 1.0, x0 * 2)
    with pytest.raises(ValueError, match="points must have z > 0 to be projected"):
        flows.project_to_plane(torch.tensor([[1.0, 2.0], [1.0, -0.5]]), 3.0)
    with pytest.raises(ValueError, match="n must be >= 1, got 0"):
        flows.uniform_polar_angle_cdf(np.zeros(3), 0)


def test_a_max_offset_that_keeps_almost_nothing_is_refused_at_once():
    data = torch.zeros(4, 8)
    # N = 8, z0 = 1: offsets shorter than 0.1 have probability I_u(4, 1/2), u = 0.01 / 1.01: ~1e-9; the redraws
    # would not end (today they loop for ever), so it is an error before any draw
    with pytest.raises(ValueError, match=r"max_offset = 0.1 keeps only .* of the offsets at z0 = 1 in N = 8 .* must "
                                         r"keep at least 0.01"):
        flows.flux_start_points(data, 10, 1.0, max_offset=0.1)
    kept = flows.flux_start_points(data, 500, 1.0, generator=torch.Generator().manual_seed(0), max_offset=5.0)
    assert kept.norm(dim=1).max() <= 5.0          # a max_offset that keeps most of the law still works
