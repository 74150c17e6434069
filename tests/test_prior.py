"""Facts about pfgm_lite/prior.py: the radius law, the clipped fraction, and what each clip mode does."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from pfgm_lite.prior import clipped_fraction, log_prior_density, prior_radius_cdf, sample_prior


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("N, z_max", [(1, 2.0), (2, 1.0), (784, 11.1), (3072, 40.0)])
def test_unclipped_radii_follow_the_radius_cdf(N, z_max):
    s = sample_prior(4000 if N > 100 else 20_000, N, z_max, clip="none", generator=gen(1), dtype=torch.float64)
    assert (s.z == z_max).all() and not s.clipped.any()
    radii = s.x.norm(dim=1).numpy()
    cdf = lambda r: prior_radius_cdf(r, N, z_max)  # noqa: E731
    assert stats.kstest(radii, cdf).pvalue > 1e-3
    # power: the same law at a 10% larger z_max is rejected
    assert stats.kstest(radii, lambda r: prior_radius_cdf(r, N, 1.1 * z_max)).pvalue < 1e-4


def test_radius_cdf_matches_the_density():
    # N = 2: p(x) = z / (2 pi (r^2 + z^2)^{3/2}), so P(R <= r) = 1 - z / sqrt(r^2 + z^2)
    r = np.array([0.0, 0.5, 1.0, 10.0, 1e6])
    np.testing.assert_allclose(prior_radius_cdf(r, 2, 1.0), 1 - 1 / np.sqrt(r**2 + 1), atol=1e-12)
    # N = 1: the Cauchy law, P(|x| <= r) = 2 arctan(r / z) / pi; and the density integrates to 1
    np.testing.assert_allclose(prior_radius_cdf(r, 1, 2.0), 2 * np.arctan(r / 2) / np.pi, atol=1e-12)
    dens = lambda x: math.exp(log_prior_density(torch.tensor([[x]], dtype=torch.float64), 2.0).item())  # noqa
    assert integrate.quad(dens, -np.inf, np.inf)[0] == pytest.approx(1.0, abs=1e-8)


@pytest.mark.parametrize("clip", ["radius", "ray"])
@pytest.mark.parametrize("N, z_max, upper_norm", [(2, 1.0, 3.0), (784, 11.14, 391.1), (3072, 40.0, 3000.0)])
def test_clipped_fraction_matches_samples(clip, N, z_max, upper_norm):
    n = 20_000 if N == 2 else 4000
    s = sample_prior(n, N, z_max, upper_norm, clip=clip, generator=gen(2))
    p = clipped_fraction(N, z_max, upper_norm)
    assert abs(s.clipped.double().mean().item() - p) < 4 * math.sqrt(p * (1 - p) / n)
    norms = s.x.norm(dim=1)
    # float32: the norm R, the scaling by upper_norm / R and the norm again; torch sums N <= 3072 squares in a
    # cascade, ~log2(N) eps32 each: a few 1e-6 at most
    torch.testing.assert_close(norms[s.clipped], torch.full((int(s.clipped.sum()),), upper_norm), rtol=1e-5, atol=0)
    assert (norms[~s.clipped] <= upper_norm).all()


def test_clipped_fraction_values():
    # the fact sheet: about 54% of CIFAR prior radii are clipped with the shipped z_max = 40, upper_norm = 3000
    assert clipped_fraction(3072, 40.0, 3000.0) == pytest.approx(0.54, abs=0.005)
    # N = 2: P(R > U) = z_max / sqrt(U^2 + z_max^2) (the radius CDF above), so at the rule's own
    # upper_norm U = sqrt(pi N / 2) z_max = sqrt(pi) z_max it is 1 / sqrt(1 + pi) = 0.4929 whatever z_max.
    # Float64 betainc of arguments exact to a few ulps: 1e-12 leaves ~1000x room.
    for z_max in (0.1, 3.0, 40.0):
        assert clipped_fraction(2, z_max, math.sqrt(math.pi) * z_max) == pytest.approx(1 / math.sqrt(1 + math.pi),
                                                                                       rel=0, abs=1e-12)
    assert clipped_fraction(2, 1.0, 1e9) < 1e-8 and clipped_fraction(2, 1.0, 1e-9) > 1 - 1e-8


def test_ray_clip_keeps_directions_and_slides_along_the_ray():
    N, z_max, upper = 3, 2.0, 4.0
    free = sample_prior(5000, N, z_max, clip="none", generator=gen(3), dtype=torch.float64)
    ray = sample_prior(5000, N, z_max, upper, clip="ray", generator=gen(3), dtype=torch.float64)
    r = free.x.norm(dim=1)
    assert torch.equal(ray.clipped, r > upper) and 0.05 < ray.clipped.double().mean() < 0.95
    torch.testing.assert_close(ray.x / ray.x.norm(dim=1, keepdim=True), free.x / r[:, None])
    c = ray.clipped
    torch.testing.assert_close(ray.x[c].norm(dim=1), torch.full((int(c.sum()),), upper, dtype=torch.float64))
    # the point (x, z_max) scaled by upper / R: still on the ray from the origin, z = z_max upper / R >= z_max / 100
    torch.testing.assert_close(ray.z[c], (z_max * upper / r[c]).clamp_min(z_max / 100))
    assert (ray.z[c] < z_max).all() and (ray.z[c] >= z_max / 100).all()
    assert (ray.z[c] == z_max / 100).any()  # the clamp acts on some near-horizontal rays
    torch.testing.assert_close(ray.x[~c], free.x[~c])
    assert (ray.z[~c] == z_max).all()


def test_radius_clip_bounds_radius_and_keeps_directions():
    free = sample_prior(5000, 2, 0.2, clip="none", generator=gen(4))
    rad = sample_prior(5000, 2, 0.2, 2.0, clip="radius", generator=gen(4))
    r = rad.x.norm(dim=1)
    assert (r >= 1 - 1e-6).all() and (r <= 2 + 1e-6).all()  # R clipped to [1, upper_norm], float32: a few eps32
    assert (free.x.norm(dim=1) < 1).float().mean() > 0.5  # so the lower clip acted on most of them
    # float32, N = 2: a scaling and two 2-term norms, a few eps32 (assert_close's float32 rtol is 1.3e-6 = 11 eps32)
    torch.testing.assert_close(rad.x / r[:, None], free.x / free.x.norm(dim=1, keepdim=True))
    assert (rad.z == 0.2).all()


def test_errors():
    with pytest.raises(ValueError, match=r"clip must be one of \('radius', 'ray', 'none'\), got 'box'"):
        sample_prior(10, 2, 1.0, 3.0, clip="box")
    with pytest.raises(ValueError, match="upper_norm is required with clip='ray'"):
        sample_prior(10, 2, 1.0, clip="ray")
    with pytest.raises(ValueError, match="z_max must be finite and > 0, got -1.0"):
        sample_prior(10, 2, -1.0, clip="none")
    with pytest.raises(ValueError, match="upper_norm must be finite and > 0, got 0"):
        sample_prior(10, 2, 1.0, 0, clip="radius")
    with pytest.raises(ValueError, match="n must be >= 1, got 0"):
        sample_prior(0, 2, 1.0, clip="none")
    with pytest.raises(TypeError, match="N must be an int"):
        clipped_fraction(2.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="z_max must be finite and > 0"):
        clipped_fraction(2, float("inf"), 1.0)
