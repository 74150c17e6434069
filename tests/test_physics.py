"""Facts about pfgm_lite/physics.py: sphere areas, Green's function, Gauss's law, the Poisson kernel."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, special, stats

from pfgm_lite import physics

F64 = torch.float64


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- S_N ------------------------------------------------------------------------------------

@pytest.mark.parametrize("n, exact", [
    (0, 2.0), (1, 2 * math.pi), (2, 4 * math.pi), (3, 2 * math.pi**2), (4, 8 * math.pi**2 / 3), (5, math.pi**3),
])
def test_sphere_area_closed_forms(n, exact):
    assert math.isclose(physics.sphere_area(n), exact, rel_tol=1e-13)
    assert math.isclose(physics.log_sphere_area(n), math.log(exact), rel_tol=1e-13, abs_tol=1e-13)


def test_sphere_area_recursion():
    # S_{n+2} = 2 pi / (n + 1) * S_n  (integrate the n-sphere over two more angles)
    for n in range(20):
        assert math.isclose(physics.sphere_area(n + 2), 2 * math.pi / (n + 1) * physics.sphere_area(n), rel_tol=1e-12)


def test_log_sphere_area_high_dimension():
    n = 3072
    expected = math.log(2) + (n + 1) / 2 * math.log(math.pi) - special.gammaln((n + 1) / 2)
    value = physics.log_sphere_area(n)
    assert math.isfinite(value)
    assert math.isclose(value, expected, rel_tol=1e-12)
    assert -8000 < value < -7950
    # the plain area underflows: documented, log_sphere_area is the way in high dimension
    assert physics.sphere_area(3072) == 0.0


def test_sphere_area_rejects_bad_n():
    with pytest.raises(ValueError, match="n must be >= 0, got -1"):
        physics.sphere_area(-1)
    with pytest.raises(TypeError, match="n must be an int, got float"):
        physics.sphere_area(2.0)


# --- Green's function, potential, field ----------------------------------------------------

def laplacian(f, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Laplacian of a scalar function at points x (B, D) by autograd, and the sum of |d^2 f / dx_i^2|."""
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(f(x).sum(), x, create_graph=True)
    terms = torch.stack(
        [torch.autograd.grad(grad[:, i].sum(), x, retain_graph=True)[0][:, i] for i in range(x.shape[1])], dim=1
    )
    return terms.sum(1), terms.abs().sum(1)


@pytest.mark.parametrize("n", range(1, 11))
def test_green_function_is_harmonic_away_from_the_charge(n):
    g = gen(n)
    charge = torch.randn(1, n + 1, generator=g, dtype=F64)
    direction = torch.randn(32, n + 1, generator=g, dtype=F64)
    radius = 0.5 + 2 * torch.rand(32, 1, generator=g, dtype=F64)
    points = charge + radius * direction / direction.norm(dim=1, keepdim=True)
    lap, scale = laplacian(lambda x: physics.green_function(x, charge)[:, 0], points)
    assert (scale > 0).all()
    assert (lap.abs() <= 1e-12 * scale).all(), (lap.abs() / scale).max()


def field_rounding_bound(points: torch.Tensor, charges: torch.Tensor, eps: float) -> torch.Tensor:
    """Rounding bound for the computed field at each point: 8 eps sum_i |E_i| D (|x|^2 + |y_i|^2) / d_i^2, (B,).

    Each d_i^2 comes from the dot-product form, with an error ~ 2 eps (|x|^2 + |y_i|^2); the term's power D/2 of
    it turns that into a relative error ~ D times as large; summed over the terms |E_i| = 1 / (S_{D-1} d_i^{D-1})
    (a bound on the total, also when the terms cancel). Measured errors stay below 0.4 of it.
    """
    points, charges = points.double(), charges.double()
    d2 = ((points[:, None] - charges[None]) ** 2).sum(-1)
    dim = points.shape[1]
    sizes = 1 / (physics.sphere_area(dim - 1) * d2 ** ((dim - 1) / 2))
    amplification = dim * ((points**2).sum(1)[:, None] + (charges**2).sum(1)[None]) / d2
    return 8 * eps * (sizes * amplification).sum(1)


@pytest.mark.parametrize("n", [1, 2, 4])
def test_minus_gradient_of_potential_is_the_field(n):
    g = gen(10 + n)
    charges = torch.randn(5, n + 1, generator=g, dtype=F64)
    points = 3 * torch.randn(40, n + 1, generator=g, dtype=F64)
    x = points.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(physics.potential(x, charges).sum(), x)
    torch.testing.assert_close(-grad, physics.poisson_field(points, charges), rtol=1e-10, atol=1e-14)


def test_poisson_field_matches_coulomb_sum():
    g = gen(3)
    for n in (1, 2, 3, 6):
        charges = torch.randn(7, n + 1, generator=g, dtype=F64)
        points = 2 * torch.randn(11, n + 1, generator=g, dtype=F64)
        diff = points[:, None, :] - charges[None, :, :]
        direct = (diff / diff.norm(dim=-1, keepdim=True) ** (n + 1)).sum(1) / physics.sphere_area(n)
        error = (physics.poisson_field(points, charges) - direct).norm(dim=1)
        assert (error <= field_rounding_bound(points, charges, torch.finfo(F64).eps)).all()   # measured <= 0.37 of it


def test_green_function_values():
    charge = torch.zeros(1, 3, dtype=F64)
    point = torch.tensor([[2.0, 0.0, 0.0]], dtype=F64)
    assert physics.green_function(point, charge).item() == pytest.approx(1 / (4 * math.pi * 2))  # Coulomb, 3D
    plane = torch.tensor([[0.0, math.e]], dtype=F64)
    assert physics.green_function(plane, torch.zeros(1, 2, dtype=F64)).item() == pytest.approx(-1 / (2 * math.pi))


def monte_carlo_flux(charges: torch.Tensor, radius: float, n_samples: int, g: torch.Generator):
    """Flux of the field through the sphere of `radius` around the origin: (estimate, standard error)."""
    dim = charges.shape[1]
    u = torch.randn(n_samples, dim, generator=g, dtype=F64)
    u = u / u.norm(dim=1, keepdim=True)
    outward = (physics.poisson_field(radius * u, charges) * u).sum(1)   # E . n on the sphere
    area = physics.sphere_area(dim - 1) * radius ** (dim - 1)
    return area * outward.mean().item(), area * outward.std().item() / math.sqrt(n_samples)


@pytest.mark.parametrize("dim", [2, 3, 5])
def test_gauss_law_flux_equals_enclosed_charge(dim):
    g = gen(100 + dim)
    norms = torch.tensor([0.3, 0.9, 1.6, 2.6], dtype=F64)
    direction = torch.randn(4, dim, generator=g, dtype=F64)
    charges = norms[:, None] * direction / direction.norm(dim=1, keepdim=True)
    for radius, enclosed in [(0.6, 1), (1.25, 2), (2.0, 3), (3.2, 4), (0.1, 0)]:
        flux, se = monte_carlo_flux(charges, radius, 10000, g)
        assert abs(flux - enclosed) < 4 * se + 1e-9, (radius, flux, enclosed, se)


def test_field_of_symmetric_charges_vanishes_at_the_centre():
    # measured: 8e-17 and 1.1e-16, against bounds of 1.7e-14 and 3.4e-15; off-centre the field is 3e-2
    eps = torch.finfo(F64).eps
    centre = torch.tensor([[0.5, -1.0, 0.25]], dtype=F64)
    pairs = torch.tensor([[1.0, 0, 0], [0, 2.0, 0], [0, 0, 0.7], [0.3, -0.4, 1.0]], dtype=F64)
    charges = torch.cat([centre + pairs, centre - pairs])
    assert physics.poisson_field(centre, charges).norm() <= field_rounding_bound(centre, charges, eps)
    angles = torch.arange(6, dtype=F64) * 2 * math.pi / 6
    ring = torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    origin = torch.zeros(1, 2, dtype=F64)
    assert physics.poisson_field(origin, ring).norm() <= field_rounding_bound(origin, ring, eps)
    # but not off-centre
    off = torch.tensor([[0.5, 0.0]], dtype=F64)
    assert physics.poisson_field(off, ring).norm() > 1e3 * field_rounding_bound(off, ring, eps)


@pytest.mark.parametrize("dim", [2, 3, 20, 785])     # 785: the digits; charge blocks also capped by numbers
def test_chunked_equals_unchunked(dim):
    g = gen(dim)
    charges = torch.randn(37, dim, generator=g, dtype=F64)
    points = 2 * torch.randn(23, dim, generator=g, dtype=F64)
    e_hat, log_s = physics.weighted_field(points, charges)
    e_hat_small, log_s_small = physics.weighted_field(points, charges, block_elements=7)
    torch.testing.assert_close(e_hat_small, e_hat, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(log_s_small, log_s, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(physics.poisson_field(points, charges, block_elements=5),
                               physics.poisson_field(points, charges), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(physics.potential(points, charges, block_elements=5),
                               physics.potential(points, charges), rtol=1e-10, atol=1e-12)


def test_weighted_field_is_a_softmax_mean():
    g = gen(5)
    charges = torch.randn(9, 4, generator=g, dtype=F64)
    points = torch.randn(6, 4, generator=g, dtype=F64)
    e_hat, log_s = physics.weighted_field(points, charges)
    d = torch.cdist(points, charges)
    w = d ** -4 / (d ** -4).sum(1, keepdim=True)
    torch.testing.assert_close(e_hat, points - w @ charges)
    torch.testing.assert_close(log_s, torch.log((d ** -4).sum(1)))
    # with charges on the plane z = 0, the last component of E_hat is exactly the height z
    flat = torch.cat([charges[:, :3], torch.zeros(9, 1, dtype=F64)], 1)
    e_hat_flat, _ = physics.weighted_field(points, flat)
    torch.testing.assert_close(e_hat_flat[:, -1], points[:, -1], rtol=1e-14, atol=1e-14)


def test_float32_agrees_with_float64():
    g = gen(7)
    charges = torch.randn(50, 3, generator=g, dtype=F64)
    points = 2 * torch.randn(30, 3, generator=g, dtype=F64)
    points, charges = points.float(), charges.float()
    e32 = physics.poisson_field(points, charges)
    assert e32.dtype == torch.float32
    e64 = physics.poisson_field(points.double(), charges.double())   # the same inputs, float64 arithmetic
    # measured: <= 0.055 of the float32 rounding bound (3.9e-6 of |E| at most)
    error = (e32.double() - e64).norm(dim=1)
    assert (error <= field_rounding_bound(points, charges, torch.finfo(torch.float32).eps)).all()


@pytest.mark.parametrize("n", [784, 3072])
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_high_dimension_is_finite(n, dtype):
    g = gen(n)
    # data-like distances: charges ~ 30 apart, points ~ 20 from one charge and ~ 36 from the others
    charges = torch.randn(64, n + 1, generator=g, dtype=F64) * 30 / math.sqrt(2 * n)
    charges[:, -1] = 0.0
    points = charges[:16] + torch.randn(16, n + 1, generator=g, dtype=F64) * 20 / math.sqrt(n)
    points[:, -1] = points[:, -1].abs() + 1.0
    d = torch.cdist(points, charges)
    assert 15 < d.min() and d.max() < 45
    e_hat, log_s = physics.weighted_field(points.to(dtype), charges.to(dtype))
    assert torch.isfinite(e_hat).all() and torch.isfinite(log_s).all()
    assert (log_s < -2000).all()                 # d^{-(N+1)} far below the smallest float
    e = physics.poisson_field(points.to(dtype), charges.to(dtype))
    assert torch.isfinite(e).all()               # underflows to 0 here, but never NaN or inf
    if dtype == torch.float32:
        # E_hat survives in float32: the nearest charge holds all the weight (the next ones (20/36)^N ~ 1e-200 of
        # it, 0 in float32), so E_hat = x - y_nearest is rounded once, to float32 (measured 2.7e-8 of |E_hat|)
        e_hat64, _ = physics.weighted_field(points.float().double(), charges.float().double())
        error = (e_hat.double() - e_hat64).norm(dim=1)
        assert (error <= torch.finfo(torch.float32).eps * e_hat64.norm(dim=1)).all()


# --- Poisson kernel -------------------------------------------------------------------------

def test_poisson_kernel_is_the_cauchy_density_in_1d():
    x = torch.linspace(-20, 20, 101, dtype=F64)[:, None]
    torch.testing.assert_close(physics.poisson_kernel(x, 1.5), torch.from_numpy(stats.cauchy(scale=1.5).pdf(x[:, 0])))


@pytest.mark.parametrize("n", [1, 2, 3])
def test_poisson_kernel_integrates_to_one(n):
    h = 2.0

    def radial(r):  # density on the sphere of radius r times its area S_{n-1} r^{n-1}
        x = torch.zeros(1, n, dtype=F64)
        x[0, 0] = r
        return physics.poisson_kernel(x, h).item() * physics.sphere_area(n - 1) * r ** (n - 1)

    total, err = integrate.quad(radial, 0, np.inf, limit=200)
    assert total == pytest.approx(1.0, abs=1e-7), (total, err)


def test_poisson_kernel_integrates_to_one_on_a_grid():
    # N = 2 on a plain grid: the tail beyond radius L carries h / sqrt(L^2 + h^2) exactly
    h, half, k = 1.0, 60.0, 1201
    t = torch.linspace(-half, half, k, dtype=F64)
    grid = torch.stack(torch.meshgrid(t, t, indexing="ij"), -1).reshape(-1, 2)
    mass = physics.poisson_kernel(grid, h).sum().item() * (t[1] - t[0]).item() ** 2
    assert 1 - 2 * h / half < mass < 1


@pytest.mark.parametrize("n", [1, 2, 5])
def test_sample_poisson_kernel_radius_law(n):
    h = 3.0
    x = physics.sample_poisson_kernel(4000, n, h, generator=gen(100 + n), dtype=F64)
    assert x.shape == (4000, n) and x.dtype == F64
    ratio = ((x**2).sum(1) / h**2).numpy()
    assert stats.kstest(ratio, stats.betaprime(n / 2, 0.5).cdf).pvalue > 1e-3
    # and the law is not a nearby one
    assert stats.kstest(ratio, stats.betaprime(n / 2 + 0.5, 0.5).cdf).pvalue < 1e-4
    if n > 1:  # uniform directions: the mean unit vector is ~ 0
        u = x / x.norm(dim=1, keepdim=True)
        assert u.mean(0).norm() < 4 / math.sqrt(4000)


def test_log_poisson_kernel_formula():
    x = torch.tensor([[1.0, 2.0, -1.0]], dtype=F64)
    h = 0.5
    expected = math.log(2 * h / physics.sphere_area(3)) - 2 * math.log(6.0 + h**2)
    assert physics.log_poisson_kernel(x, h).item() == pytest.approx(expected, rel=1e-13)
    assert physics.sample_poisson_kernel(0, 3, 1.0).shape == (0, 3)


# --- errors -----------------------------------------------------------------------------------

def test_errors_name_the_argument():
    ok = torch.zeros(4, 3)
    with pytest.raises(ValueError, match=r"points must have 2 dimensions, got shape \(3,\)"):
        physics.poisson_field(torch.zeros(3), ok)
    with pytest.raises(ValueError, match="points and charges must live in the same space: last dimensions 2 and 3"):
        physics.poisson_field(torch.zeros(4, 2), ok)
    with pytest.raises(TypeError, match="charges must be a torch.Tensor, got ndarray"):
        physics.weighted_field(ok, np.zeros((4, 3)))
    with pytest.raises(TypeError, match="points must be a floating-point tensor"):
        physics.potential(torch.zeros(4, 3, dtype=torch.int64), ok)
    bad = ok.clone()
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match="charges must be finite, got 1 NaN/inf entries"):
        physics.green_function(ok, bad)
    with pytest.raises(ValueError, match="charges must hold at least one charge"):
        physics.poisson_field(ok, torch.zeros(0, 3))
    with pytest.raises(ValueError, match="points must have last dimension >= 2"):
        physics.poisson_field(torch.zeros(4, 1), torch.zeros(2, 1))
    with pytest.raises(ValueError, match="height must be finite and > 0, got -1.0"):
        physics.poisson_kernel(torch.zeros(2, 2), -1.0)
    with pytest.raises(ValueError, match="height must be finite and > 0, got 0"):
        physics.sample_poisson_kernel(3, 2, 0)
    with pytest.raises(ValueError, match="n must be >= 0, got -5"):
        physics.sample_poisson_kernel(-5, 2, 1.0)


def test_squared_distances_are_accurate_close_to_a_charge():
    # the dot-product form alone loses d^2 = 1e-8 next to ||x||^2 ~ 9 in float32; the close pairs are recomputed
    g = gen(8)
    charges = 3 + torch.randn(40, 3, generator=g, dtype=F64)
    points = charges[:10] + 1e-4 * torch.randn(10, 3, generator=g, dtype=F64)
    points, charges = points.float(), charges.float()
    d2 = physics.squared_distances(points, charges)
    exact = ((points.double()[:, None] - charges.double()[None]) ** 2).sum(-1)   # of the same float32 inputs
    eps, dim = torch.finfo(torch.float32).eps, points.shape[1]
    idx = torch.arange(10)                       # each point's own charge, d ~ 2e-4
    # close pairs, as sum (x - y)^2 in float32: D squares and sums, relative error <= 2 D eps32 (measured 0)
    close_error = ((d2[idx, idx].double() - exact[idx, idx]).abs() / exact[idx, idx]).max()
    assert close_error <= 2 * dim * eps
    # the dot-product form alone would have lost them: all digits gone (measured relative error 1.0)
    x2, y2 = (points**2).sum(1)[:, None], (charges**2).sum(1)[None]
    dot_form = (x2 + y2 - 2 * points @ charges.T).clamp_min(0)
    assert ((dot_form[idx, idx].double() - exact[idx, idx]).abs() / exact[idx, idx]).max() > 1e3 * 2 * dim * eps
    # every pair: the dot-product form's error eps32 (||x||^2 + ||y||^2) times a few (D products, 3 sums)
    # (measured 1.4 eps32 (||x||^2 + ||y||^2))
    assert ((d2.double() - exact).abs() <= 4 * dim * eps * (x2 + y2).double()).all()


def test_squared_distances_keep_every_pair_accurate_next_to_a_far_point():
    # the recompute test is per pair: a far point (the prior's heavy tail) next to close ones must neither lose the
    # close pairs' digits nor its own; every pair's relative error stays below ~1e3 eps32 (the recompute threshold)
    g = gen(9)
    charges = torch.randn(500, 3, generator=g, dtype=F64)
    points = torch.cat([charges[:5] + 1e-4 * torch.randn(5, 3, generator=g, dtype=F64),
                        torch.tensor([[3e3, -2e3, 1e3]], dtype=F64)]).float()
    charges = charges.float()
    d2 = physics.squared_distances(points, charges)
    exact = ((points.double()[:, None] - charges.double()[None]) ** 2).sum(-1)
    eps, dim = torch.finfo(torch.float32).eps, points.shape[1]
    relative = (d2.double() - exact).abs() / exact
    assert relative.max() <= 4 * dim * eps * 1e3, relative.max()
    assert relative[:5, torch.arange(5)].diagonal().max() <= 2 * dim * eps       # the close pairs: recomputed
