"""Facts about pfgm_lite/perturb.py: the laws of the PFGM perturbation kernel and the hyper-parameter rule."""
from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from pfgm_lite.perturb import (
    PFGMHyperparameters,
    band_exponents,
    hyperparameter_rule,
    hyperparameters_for,
    mean_data_norm,
    perturb,
)

F64 = torch.float64
M, SIGMA, TAU = 200, 0.01, 0.03


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def draw(shape=(3,), n=20_000, restrict_M=False, seed=0):
    y = torch.randn(n, *shape, generator=gen(seed + 100), dtype=F64)
    x, z, m = perturb(y, M, SIGMA, TAU, restrict_M=restrict_M, generator=gen(seed))
    return y, x, z, m


# --- the kernel's laws ----------------------------------------------------------------------

def test_shapes_and_upper_half_space():
    y, x, z, m = draw(shape=(1, 4, 4), n=64)
    assert x.shape == y.shape and z.shape == (64,) and m.shape == (64,)
    assert (z > 0).all()


def test_z_rescaled_by_growth_is_half_normal():
    # z / (1+tau)^m = |eps_z| ~ |N(0, sigma^2)|
    _, _, z, m = draw()
    eps_z = (z / (1 + TAU) ** m).numpy()
    assert stats.kstest(eps_z, stats.halfnorm(scale=SIGMA).cdf).pvalue > 1e-3
    # the test has power: a 20% wrong scale is rejected
    assert stats.kstest(eps_z, stats.halfnorm(scale=1.2 * SIGMA).cdf).pvalue < 1e-6


@pytest.mark.parametrize("shape", [(1,), (3,), (1, 2, 2)])
def test_x_radii_are_chi_N(shape):
    # ||x - y|| / (sigma (1+tau)^m) = ||eps_x|| / sigma ~ chi_N, N = numel of the data shape
    n_dims = math.prod(shape)
    y, x, _, m = draw(shape=shape)
    radii = ((x - y).flatten(1).norm(dim=1) / (SIGMA * (1 + TAU) ** m)).numpy()
    assert stats.kstest(radii, stats.chi(n_dims).cdf).pvalue > 1e-3
    assert stats.kstest(radii, stats.chi(n_dims + 1).cdf).pvalue < 1e-6


def test_x_displacement_direction_is_uniform():
    # in 2D the angle of x - y is uniform on (-pi, pi]
    y, x, _, _ = draw(shape=(2,))
    d = x - y
    angle = torch.atan2(d[:, 1], d[:, 0]).numpy()
    assert stats.kstest(angle, stats.uniform(-math.pi, 2 * math.pi).cdf).pvalue > 1e-3


def test_m_is_uniform_on_0_M():
    _, _, _, m = draw()
    assert stats.kstest(m.numpy(), stats.uniform(0, M).cdf).pvalue > 1e-3
    assert 0 <= m.min() and m.max() <= M


def test_restrict_M_confines_small_eps_z():
    n = 40_000
    _, _, _, m_free = draw(n=n)
    _, _, z, m = draw(n=n, restrict_M=True)
    eps_z = z / (1 + TAU) ** m
    small = eps_z < 0.005
    p_small = 2 * stats.norm.cdf(0.5) - 1  # P(|N(0, 1)| < 0.5) = 0.383
    assert abs(small.double().mean().item() - p_small) < 4 * math.sqrt(p_small * (1 - p_small) / n)
    # every sample with |eps_z| < 0.005 has m in [0, 0.7 M]; the others keep U[0, M]
    assert (m[small] <= 0.7 * M).all()
    assert stats.kstest(m[small].numpy(), stats.uniform(0, 0.7 * M).cdf).pvalue > 1e-3
    assert stats.kstest(m[~small].numpy(), stats.uniform(0, M).cdf).pvalue > 1e-3
    # so the fraction with m > 0.7 M drops from 0.3 to 0.3 (1 - 0.383) = 0.185
    expected_free, expected_restricted = 0.3, 0.3 * (1 - p_small)
    frac_free = (m_free > 0.7 * M).double().mean().item()
    frac_restricted = (m > 0.7 * M).double().mean().item()
    assert abs(frac_free - expected_free) < 4 * math.sqrt(0.3 * 0.7 / n)
    assert abs(frac_restricted - expected_restricted) < 4 * math.sqrt(expected_restricted / n)


def test_emphasis_draws_that_fraction_of_m_from_the_band():
    n, band = 40_000, (50.0, 120.0)
    y = torch.randn(n, 3, generator=gen(100), dtype=F64)
    _, _, m = perturb(y, M, SIGMA, TAU, generator=gen(0), band=band, emphasis=0.5)
    in_band = ((m >= band[0]) & (m <= band[1])).double().mean().item()
    expected = 0.5 + 0.5 * (band[1] - band[0]) / M   # the band's own share of U[0, M] plus the emphasized half
    assert abs(in_band - expected) < 4 * math.sqrt(expected * (1 - expected) / n)
    # emphasis = 1: every m is uniform on the band
    _, _, m_all = perturb(y, M, SIGMA, TAU, generator=gen(0), band=band, emphasis=1.0)
    assert stats.kstest(m_all.numpy(), stats.uniform(band[0], band[1] - band[0]).cdf).pvalue > 1e-3
    # emphasis = 0 is the paper's kernel, draw for draw
    plain = perturb(y[:100], M, SIGMA, TAU, generator=gen(3))
    same = perturb(y[:100], M, SIGMA, TAU, generator=gen(3), band=band, emphasis=0.0)
    assert all(torch.equal(u, v) for u, v in zip(plain, same))


def test_band_exponents_put_the_noise_between_low_and_high_times_the_data_scale():
    hp = hyperparameter_rule(784, 26.9)
    m_low, m_high = band_exponents(hp)
    scale = 26.9 / math.sqrt(784)                         # the data's size per dimension
    assert math.isclose(hp.sigma * (1 + hp.tau) ** m_low, 0.1 * scale, rel_tol=1e-9)
    assert math.isclose(hp.sigma * (1 + hp.tau) ** m_high, 3.0 * scale, rel_tol=1e-9)
    assert 0 < m_low < m_high < hp.M
    # a band reaching past the largest perturbation is clipped to M (and below sigma to 0)
    assert band_exponents(hp, low=1e-6, high=1e6) == (0.0, float(hp.M))
    with pytest.raises(ValueError, match="low must be smaller than high, got low = 3.0, high = 0.1"):
        band_exponents(hp, low=3, high=0.1)


def test_generator_reproduces():
    y = torch.randn(10, 2, generator=gen(1))
    a = perturb(y, M, SIGMA, TAU, generator=gen(5))
    b = perturb(y, M, SIGMA, TAU, generator=gen(5))
    c = perturb(y, M, SIGMA, TAU, generator=gen(6))
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not torch.equal(a[0], c[0])


# --- the hyper-parameter rule ---------------------------------------------------------------

def test_rule_reproduces_cifar10():
    hp = hyperparameter_rule(3072, 30.0)
    # official hyper-parameters.py: M = 287, z_max = 38.6, upper_norm = 2679; the config ships 291 / 40 / 3000
    assert 287 <= hp.M <= 291
    assert 38 <= hp.z_max <= 40
    assert 2600 <= hp.upper_norm <= 3000
    assert hp.M == 287 and hp.z_max == pytest.approx(38.57, abs=0.01) and hp.upper_norm == pytest.approx(2679, abs=1)


def test_rule_reproduces_fact_sheet_mnist_example():
    N, n_bar, sigma, tau = 784, 9.3, 0.01, 0.03
    hp = hyperparameter_rule(N, n_bar)
    # App. B.1.1: M is the first integer above 0.75 log_{1+tau}(n_bar^2 / (2 sqrt(N) sigma^2)); the perturbation
    # scale there is sigma (1+tau)^M, z_max = E|eps_z| = sqrt(2/pi) scale, upper_norm = sqrt(N) scale
    M = math.floor(0.75 * math.log(n_bar**2 / (2 * math.sqrt(N) * sigma**2), 1 + tau)) + 1
    scale = sigma * math.exp(M * math.log1p(tau))
    assert hp.M == M == 245   # the fact sheet's M
    # float64, (1+tau)^M by two different routes: ~M eps = 5e-14 apart at most
    assert hp.z_max == pytest.approx(math.sqrt(2 / math.pi) * scale, rel=1e-12)          # 11.1 in the fact sheet
    assert hp.upper_norm == pytest.approx(math.sqrt(N) * scale, rel=1e-12)              # 391 in the fact sheet


def test_rule_relations():
    hp = hyperparameter_rule(100, 5.0, sigma=0.02, tau=0.05)
    scale = hp.sigma * (1 + hp.tau) ** hp.M
    assert hp.z_max == pytest.approx(math.sqrt(2 / math.pi) * scale, rel=1e-12)
    # upper_norm / z_max = sqrt(pi N / 2): the prior plane sits where the largest-m perturbations live
    assert hp.upper_norm / hp.z_max == pytest.approx(math.sqrt(math.pi * 100 / 2), rel=1e-12)
    # M grows with the data norm (farther data need more doublings)
    assert hyperparameter_rule(100, 50.0).M > hyperparameter_rule(100, 5.0).M
    assert isinstance(hp, PFGMHyperparameters) and hp.to_dict()["M"] == hp.M


def test_hyperparameters_for_uses_numel_and_mean_norm():
    data = torch.randn(500, 1, 4, 4, generator=gen(2))
    hp = hyperparameters_for(data)
    assert hp.N == 16
    # the float32 mean of 500 norms of 16 terms; summed in any order it is within ~log2(500) eps32 = 5e-7
    assert hp.mean_norm == pytest.approx(data.flatten(1).norm(dim=1).mean().item(), rel=1e-6)
    assert mean_data_norm(torch.full((3, 2), 3.0)) == pytest.approx(math.sqrt(18))


# --- errors ---------------------------------------------------------------------------------

def test_errors():
    y = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="sigma must be finite and > 0, got -0.01"):
        perturb(y, M, -0.01, TAU)
    with pytest.raises(ValueError, match="tau must be finite and > 0, got 0"):
        perturb(y, M, SIGMA, 0)
    with pytest.raises(ValueError, match="tau must be finite and > 0, got -0.1"):
        hyperparameter_rule(10, 1.0, tau=-0.1)
    with pytest.raises(ValueError, match="M must be >= 1, got 0"):
        perturb(y, 0, SIGMA, TAU)
    with pytest.raises(ValueError, match=r"y must have shape \(B, \.\.\.\) with a batch dimension, got \(4,\)"):
        perturb(torch.zeros(4), M, SIGMA, TAU)
    with pytest.raises(ValueError, match="mean_norm = 0.001 is too small"):
        hyperparameter_rule(3072, 1e-3)
    with pytest.raises(ValueError, match="mean_norm must be finite and > 0"):
        hyperparameter_rule(3072, 0.0)
    with pytest.raises(ValueError, match=r"data must have shape \(B, \.\.\.\) with B >= 1, got \(5,\)"):
        mean_data_norm(torch.ones(5))
    with pytest.raises(ValueError, match="data must be finite"):
        mean_data_norm(torch.tensor([[float("nan"), 1.0]]))
    with pytest.raises(TypeError, match="N must be an int"):
        hyperparameter_rule(2.5, 1.0)
    with pytest.raises(ValueError, match=r"emphasis must be in \[0, 1\], got 1.5"):
        perturb(y, M, SIGMA, TAU, band=(1.0, 2.0), emphasis=1.5)
    with pytest.raises(ValueError, match=r"band must be \(m_low, m_high\) with 0 <= m_low < m_high <= M = 200 "
                                         r"when emphasis > 0, got None"):
        perturb(y, M, SIGMA, TAU, emphasis=0.5)
    with pytest.raises(ValueError, match="band must be"):
        perturb(y, M, SIGMA, TAU, band=(10.0, 300.0), emphasis=0.5)
