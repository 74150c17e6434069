"""Facts about pfgm_lite/diffusion.py (EDM and DDPM's sampler) and pfgm_lite/pfgmpp.py (PFGM++): the kernels' laws,
the D -> infinity limit, the ideal denoisers, EDM's time grid, and that the one trainer and sampler run every method."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from pfgm_lite import data, nets, sampling, train
from pfgm_lite.methods import EDM, PFGM, Batch, PFGMpp, method_from_config, sample_kernel_radius
from pfgm_lite.perturb import hyperparameters_for
from pfgm_lite.prior import prior_radius_cdf
from pfgm_lite.sampling import ancestral_sample, ddpm_alpha_bars

F64 = torch.float64


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- the PFGM++ kernel ------------------------------------------------------------------------

@pytest.mark.parametrize("N, D", [(2, 1), (2, 8), (10, 3), (784, 2)])
def test_kernel_radius_follows_beta_prime(N, D):
    """R^2 / r^2 ~ BetaPrime(N/2, D/2) (unclipped draws); the same test rejects the law of D + 1 extra dimensions."""
    r = 1.7
    ratio = (sample_kernel_radius(20_000, N, D, r, gen(1), clip=0.0, dtype=F64) / r) ** 2
    assert stats.kstest(ratio.numpy(), stats.betaprime(N / 2, D / 2).cdf).pvalue > 1e-3
    assert stats.kstest(ratio.numpy(), stats.betaprime(N / 2, (D + 1) / 2).cdf).pvalue < 1e-6


@pytest.mark.parametrize("N, D", [(6, 4.0), (2, 2048.0)])
def test_perturb_draws_from_the_kernel_at_r_equal_sigma_sqrt_d(N, D):
    """With P_std -> 0 every sigma is exp(P_mean), so ||x - y||^2 / r^2 follows BetaPrime(N/2, D/2), r = sigma sqrt(D).
    (N = 2, D = 2048 has b ~ 1/1000: a floor on b at 1e-3, as in the official code for images, would fail this.)"""
    sigma = math.exp(-0.5)
    method = PFGMpp((N,), D=D, p_mean=-0.5, p_std=1e-9)
    y = torch.randn(20_000, N, generator=gen(2), dtype=F64)
    x, s = method.perturb(y, gen(3))
    torch.testing.assert_close(s, torch.full_like(s, sigma), rtol=1e-6, atol=0)  # exp(p_std * N(0, 1)) ~ 1 +- 1e-8
    ratio = ((x - y).norm(dim=1) ** 2 / (D * sigma**2)).numpy()
    law = stats.betaprime(N / 2, D / 2)
    # the official clip of b to [1e-3, 1 - 1e-3] cuts R^2/r^2 at 999; compare below that point
    assert stats.kstest(ratio[ratio < 998], lambda v: law.cdf(v) / law.cdf(999)).pvalue > 1e-3
    directions = (x - y) / (x - y).norm(dim=1, keepdim=True)
    assert directions.mean(0).norm() < 5 / math.sqrt(20_000)        # uniform directions average to ~0


def test_radial_law_tends_to_the_gaussian_one_as_d_grows():
    """The KS distance between R at r = sigma sqrt(D) and sigma chi_N (EDM's Gaussian) falls with D (exact CDFs)."""
    N, sigma = 16, 0.8
    grid = np.linspace(1e-3, 10, 4000)
    gaussian = stats.chi(N).cdf(grid / sigma)
    distances = []
    for D in (1, 8, 64, 2048, 65536):
        pfgmpp = stats.betaprime(N / 2, D / 2).cdf(grid**2 / (D * sigma**2))
        distances.append(np.abs(pfgmpp - gaussian).max())
    assert all(a > b for a, b in zip(distances, distances[1:])), distances
    assert distances[0] > 0.3 and distances[-1] < 1e-3, distances


def test_d_equal_one_prior_is_pfgm_prior():
    """At D = 1 the kernel's radius at r_max has PFGM's prior law on the plane z = r_max (Poisson kernel)."""
    r_max = 2.5
    radii = sample_kernel_radius(20_000, 2, 1.0, r_max, gen(4), clip=0.0, dtype=F64).numpy()
    assert stats.kstest(radii, lambda r: prior_radius_cdf(r, 2, r_max)).pvalue > 1e-3


# --- EDM -----------------------------------------------------------------------------------------

def test_edm_noising_has_variance_sigma_squared():
    method = EDM((3,), p_mean=0.3, p_std=1e-9)
    y = torch.randn(50_000, 3, generator=gen(5), dtype=F64)
    x, sigma = method.perturb(y, gen(6))
    var = ((x - y) ** 2).mean().item()
    # 150 000 squared Gaussians: relative sd of the mean sqrt(2 / 150 000) ~ 0.004
    assert var == pytest.approx(math.exp(0.6), rel=0.02)
    assert ((x - y) / sigma[:, None]).mean().abs().max() < 0.02


def test_edm_target_and_denoiser_invert_each_other():
    """F = target(x, sigma, Batch(y, y=y)) gives D(x, sigma) = c_skip x + c_out F = y exactly (the preconditioning is consistent)."""
    method = EDM((4,), sigma_data=0.7)
    y = torch.randn(64, 4, generator=gen(7), dtype=F64)
    x, sigma = method.perturb(y, gen(8))
    target = method.target(x, sigma, Batch(large=y, y=y))
    torch.testing.assert_close(method.denoise(target, x, sigma), y, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(method.velocity(target, x, sigma), x - y, rtol=1e-12, atol=1e-12)
    c_skip, c_out, c_in = method.preconditioning(torch.tensor([1e-3, 0.7, 80.0], dtype=F64))
    assert c_skip[0] == pytest.approx(1, abs=1e-5) and c_out[0] == pytest.approx(1e-3, rel=1e-5)
    assert c_in[1] == pytest.approx(1 / (0.7 * math.sqrt(2)))    # sigma = sigma_data: equal signal and noise


def test_ideal_denoisers_agree_in_the_diffusion_limit():
    """PFGM++'s posterior mean at huge D equals EDM's Gaussian one; at D = 1 it is visibly different."""
    y = data.sample_toy("moons", 300, gen(9)).double()
    x = y[:40] + 0.3 * torch.randn(40, 2, generator=gen(10), dtype=F64)
    sigma = torch.full((40,), 0.3, dtype=F64)
    gaussian = EDM((2,)).ideal_denoiser(x, sigma, y)
    big_d = PFGMpp((2,), D=1e7).ideal_denoiser(x, sigma, y)
    small_d = PFGMpp((2,), D=1.0).ideal_denoiser(x, sigma, y)
    assert (big_d - gaussian).norm(dim=1).max() < 1e-4          # the kernels differ by O(1/D)
    assert (small_d - gaussian).norm(dim=1).max() > 0.05


def test_edm_ideal_denoiser_is_tweedies_formula_and_pfgmpp_only_in_the_limit():
    """E[y | x, sigma] = x + sigma^2 grad log p_sigma(x) for the Gaussian mixture (notebook 07, the score view);
    sigma in place of sigma^2 fails; PFGM++'s posterior mean meets Tweedie on its own kernel mixture only as D grows."""
    y = data.sample_toy("moons", 300, gen(13)).double()
    x = y[:40] + 0.3 * torch.randn(40, 2, generator=gen(14), dtype=F64)
    sigma = torch.full((40,), 0.3, dtype=F64)

    def score(log_density):
        points = x.clone().requires_grad_(True)
        return torch.autograd.grad(log_density(points).sum(), points)[0]

    gaussian = score(lambda p: torch.logsumexp(-torch.cdist(p, y) ** 2 / (2 * 0.09), dim=1))
    edm = EDM((2,)).ideal_denoiser(x, sigma, y)
    torch.testing.assert_close(edm, x + 0.09 * gaussian, rtol=0, atol=1e-10)
    assert (edm - (x + 0.3 * gaussian)).abs().max() > 1e-2
    gaps = []
    for D in (1.0, 64.0, 4096.0):
        kernel = score(lambda p: torch.logsumexp(-(2 + D) / 2 * torch.log(torch.cdist(p, y) ** 2 + 0.09 * D), dim=1))
        gaps.append((PFGMpp((2,), D=D).ideal_denoiser(x, sigma, y) - (x + 0.09 * kernel)).norm(dim=1).mean().item())
    assert gaps[0] > 0.05 and gaps[2] < 1e-3 and gaps[0] > gaps[1] > gaps[2]


@pytest.mark.parametrize("make", [lambda: EDM((2,), sigma_max=5.0), lambda: PFGMpp((2,), D=8, sigma_max=5.0)])
def test_exact_denoiser_ode_lands_on_the_data(make):
    method = make()
    y = data.sample_toy("8gaussians", 200, gen(11))
    out = sampling.sample(method, method.exact_predictor(y), 300, solver="heun", steps=40, generator=gen(12))
    distance = torch.cdist(out.x, y).min(dim=1).values
    # the ODE ends at sigma_min = 0.002: within a few sigma_min of a data point
    assert distance.median() < 0.01 and (distance < 0.05).float().mean() > 0.97, distance.quantile(0.9)


def test_edm_time_grid_is_karras_rho_schedule():
    """Heun on EDM visits sigma_i = (s_max^(1/rho) + i/n (s_min^(1/rho) - s_max^(1/rho)))^rho (Karras et al. eq. 5)."""
    method = EDM((2,), sigma_max=80.0, sigma_min=0.002, rho=7.0)
    y = data.sample_toy("moons", 50, gen(13)).double()
    out = sampling.sample(method, method.exact_predictor(y), 4, solver="heun", steps=18, generator=gen(14),
                          return_trajectory=True)
    i = torch.arange(19, dtype=F64)
    expected = (80 ** (1 / 7) + i / 18 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    visited = torch.stack([t[0].double() for _, t in out.trajectory])
    torch.testing.assert_close(visited, expected, rtol=1e-6, atol=0)   # float32 times
    assert out.nfe == 36


def test_ddpm_schedule_and_ancestral_sampler():
    alpha_bar = ddpm_alpha_bars(1000)
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=F64)
    assert alpha_bar[-1].item() == pytest.approx(math.exp(torch.log1p(-betas).sum().item()), rel=1e-12)
    assert 3e-5 < alpha_bar[-1].item() < 5e-5                       # DDPM's x_T is almost pure noise
    method = EDM((2,))
    y = data.sample_toy("8gaussians", 400, gen(15))
    x, nfe = ancestral_sample(method, method.exact_predictor(y), 200, steps=1000, generator=gen(16))
    assert nfe == 1000 and x.shape == (200, 2)
    distance = torch.cdist(x, y).min(dim=1).values
    assert distance.median() < 0.05, distance.median()              # the exact denoiser's chain ends on the data


# --- one trainer, one sampler, every method ---------------------------------------------------------

def all_methods(y):
    return {"pfgm": PFGM(hyperparameters_for(y), (2,)),
            "pfgmpp": PFGMpp((2,), D=8, sigma_data=0.7, sigma_max=5.0),
            "edm": EDM((2,), sigma_data=0.7, sigma_max=5.0)}


@pytest.mark.parametrize("name", ["pfgm", "pfgmpp", "edm"])
def test_same_trainer_and_sampler_run_every_method_and_checkpoints_round_trip(name, tmp_path):
    y = data.sample_toy("moons", 2000, gen(17))
    method = all_methods(y)[name]
    torch.manual_seed(0)
    net = nets.MLP(2, extra=method.extra_outputs, width=32, depth=1)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    config = train.TrainConfig(steps=100, batch_size=64, large_batch_size=256, lr=3e-3, warmup=5, device="cpu")
    result = train.train(method, net, y, config, out_dir=tmp_path, progress=False)
    # it learns: closer to the best possible prediction (the exact field / ideal denoiser of the data) than at the start
    x, t = method.perturb(y[:512], gen(20))
    best = method.exact_predictor(y)(x, t)
    initial = nets.MLP(2, extra=method.extra_outputs, width=32, depth=1)
    initial.load_state_dict(before)
    error = {name: ((method.predictor(n)(x, t) - best) ** 2).sum(1).mean().item()
             for name, n in [("trained", result.net), ("initial", initial)]}
    assert error["trained"] < 0.85 * error["initial"], error     # measured: 0.61-0.77 of it after 100 steps
    out = sampling.sample(method, method.predictor(result.ema), 50, solver="heun", steps=4, generator=gen(18))
    assert out.x.shape == (50, 2) and torch.isfinite(out.x).all() and out.nfe == 8
    loaded, ema, _ = train.load_model(tmp_path / "checkpoint.pt", device="cpu")
    assert type(loaded) is type(method) and loaded.to_config() == method.to_config()
    probe, t = torch.randn(5, 2, generator=gen(19)), torch.full((5,), 0.3)
    assert torch.equal(loaded.predictor(ema)(probe, t), method.predictor(result.ema.cpu())(probe, t))


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="sigma_min must be smaller than sigma_max, got 5.0 and 1.0"):
        EDM((2,), sigma_min=5.0, sigma_max=1.0)
    with pytest.raises(ValueError, match="D must be finite and > 0, got 0"):
        PFGMpp((2,), D=0)
    with pytest.raises(ValueError, match="steps must be <= 1000"):
        ancestral_sample(EDM((2,)), lambda x, t: x, 4, steps=2000)
    hp = hyperparameters_for(torch.randn(100, 2, generator=gen(1)))
    with pytest.raises(TypeError, match=r"DDPM's samplers need a DDPM \(methods.DDPM\) or a denoiser \(EDM or PFGM\+\+: methods.Denoiser\), "
                                        r"got PFGM"):
        ancestral_sample(PFGM(hp, (2,)), lambda x, t: x, 4, steps=10)
    with pytest.raises(ValueError, match=r"the edm target needs batch.y, the clean points x was made from \(shape "
                                         r"\(8, 2\)\), got shape \(4, 2\)"):
        EDM((2,)).target(torch.zeros(8, 2), torch.ones(8), Batch(large=torch.zeros(8, 2), y=torch.zeros(4, 2)))
    with pytest.raises(ValueError, match=r"the pfgmpp target needs batch.y, .*got none"):
        PFGMpp((2,), D=4).target(torch.zeros(8, 2), torch.ones(8), Batch(large=torch.zeros(8, 2)))
    assert method_from_config(PFGMpp((1, 4, 4), D=64).to_config()).D == 64
