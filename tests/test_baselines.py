"""Facts about the baselines DDPM (pfgm_lite/methods/ddpm.py, sampling.ancestral: the chain and DDIM) and EDM's
stochastic sampler (sampling.stochastic), checked against the closed forms of a Gaussian data set y ~ N(0, s^2 I):
x = y + sigma eps is N(0, (s^2 + sigma^2) I), E[y | x] = s^2 / (s^2 + sigma^2) x, and the best noise prediction is
eps_hat = (x - E[y | x]) / sigma = sigma / (s^2 + sigma^2) x."""
from __future__ import annotations

import math

import pytest
import torch

from pfgm_lite import nets, sampling, train
from pfgm_lite.checkpoint import load_model
from pfgm_lite.methods import DDPM, EDM, PFGM, Batch, ddpm_alpha_bars, method_from_config
from pfgm_lite.perturb import hyperparameter_rule
from pfgm_lite.sampling import ancestral_sample, ddim_sample, edm_sigmas, respaced_indices, stochastic_sample

F64 = torch.float64
S = 0.5


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def gaussian_eps(s: float = S):
    """The best noise prediction of N(0, s^2 I) data, (x, sigma) -> (B, N)."""
    return lambda x, t: (t[:, None] / (s**2 + t[:, None] ** 2) * x.reshape(len(x), -1).double()).float()


def gaussian_denoiser_prediction(method: EDM, s: float = S):
    """The F of the ideal denoiser of N(0, s^2 I) data, (D - c_skip x) / c_out."""
    def predict(x, t):
        c_skip, c_out, _ = method.preconditioning(t)
        best = s**2 / (s**2 + t[:, None] ** 2) * x
        return (best - c_skip[:, None] * x) / c_out[:, None]
    return predict


def spread_error(x: torch.Tensor, s: float = S) -> float:
    """max over coordinates of |std / s - 1|, in units of its Monte Carlo standard error 1 / sqrt(2 n)."""
    return ((x.double().std(0) / s - 1).abs().max() * math.sqrt(2 * len(x))).item()


def test_the_schedule_is_ho_et_al_s():
    alpha_bar = ddpm_alpha_bars(1000)
    betas = 1 - alpha_bar / torch.cat([torch.ones(1, dtype=F64), alpha_bar[:-1]])
    torch.testing.assert_close(betas[[0, -1]], torch.tensor([1e-4, 0.02], dtype=F64))
    # alpha_bar_T = exp(sum log(1 - beta)) ~ 4.0e-5 for the linear schedule: x_T is all but pure noise
    assert 3.9e-5 < alpha_bar[-1].item() < 4.1e-5
    method = DDPM((2,))
    torch.testing.assert_close(method.sigmas, torch.sqrt((1 - alpha_bar) / alpha_bar))
    assert method.sigmas[0].item() == pytest.approx(math.sqrt(1e-4 / (1 - 1e-4)))


def test_training_pairs_are_ddpm_s_noisy_points_and_noise():
    method = DDPM((2,))
    y = S * torch.randn(100_000, 2, generator=gen(1), dtype=F64)
    x, sigma = method.perturb(y, gen(2))
    # sigma is one of the T levels, drawn uniformly: each level ~100 times, the median level near T / 2
    levels = torch.searchsorted(method.sigmas, sigma)
    torch.testing.assert_close(method.sigmas[levels], sigma)
    assert abs(levels.double().median().item() - 500) < 15
    eps = method.target(x, sigma, Batch(large=y, y=y))
    torch.testing.assert_close(x, y + sigma[:, None] * eps)               # x = y + sigma eps, row for row
    assert abs(eps.std().item() - 1) < 0.01
    # the network sees DDPM's x_k = sqrt(alpha_bar) y + sqrt(1 - alpha_bar) eps and ln sigma
    x_in, c = method.network_input(x, sigma)
    alpha_bar = method.alpha_bars[levels]
    torch.testing.assert_close(x_in, alpha_bar.sqrt()[:, None] * y + (1 - alpha_bar).sqrt()[:, None] * eps)
    torch.testing.assert_close(c, sigma.log())


def test_the_exact_predictor_of_many_points_is_the_gaussian_noise_prediction():
    method = DDPM((2,))
    data = S * torch.randn(20_000, 2, generator=gen(3), dtype=F64)
    for sigma in (2.0, 0.5):
        t = torch.full((300,), sigma, dtype=F64)
        x = math.sqrt(S**2 + sigma**2) * torch.randn(300, 2, generator=gen(4), dtype=F64)
        got, expected = method.exact_predictor(data)(x, t), gaussian_eps()(x, t).double()
        assert ((got - expected) ** 2).sum(1).mean().sqrt() < 0.02
        # a prediction of -eps (the sign of x - y read the other way) is far off
        assert ((got + expected) ** 2).sum(1).mean().sqrt() > 0.3


def test_respacing():
    assert torch.equal(respaced_indices(1000), torch.arange(1000))
    assert torch.equal(respaced_indices(4), torch.tensor([0, 333, 666, 999]))
    assert torch.equal(respaced_indices(1), torch.tensor([999]))
    quadratic = respaced_indices(10, power=2.0)
    assert quadratic[0] == 0 and quadratic[-1] == 999 and (quadratic.diff() > 0).all()
    assert quadratic[1] == round(999 / 81)                 # (1/9)^2 of the way: denser near the data
    dense = respaced_indices(500, power=5.0)               # ties near 0 are pushed apart, the ends kept
    assert len(dense.unique()) == 500 and dense[-1] == 999 and dense[0] == 0


def test_ddim_is_euler_in_sigma_and_matches_the_closed_form_product():
    # on Gaussian data eps_hat = sigma / (s^2 + sigma^2) x, so every DDIM step multiplies x by
    # 1 + (sigma_next - sigma) sigma / (s^2 + sigma^2): the whole chain is a known product, per sample
    method = DDPM((2,))
    steps = 20
    x, nfe = ddim_sample(method, gaussian_eps(), 1000, steps=steps, generator=gen(5), power=2.0)
    sigmas = method.sigmas[respaced_indices(steps, power=2.0)].tolist()
    factor = math.sqrt(1 + sigmas[-1] ** 2)
    for k in reversed(range(steps)):
        nxt = sigmas[k - 1] if k > 0 else 0.0
        factor *= 1 + (nxt - sigmas[k]) * sigmas[k] / (S**2 + sigmas[k] ** 2)
    x_T = torch.randn(1000, 2, generator=gen(5), dtype=F64)
    torch.testing.assert_close(x.double(), factor * x_T, rtol=1e-5, atol=1e-6)  # float32 network input
    assert nfe == steps


def ancestral_chain_std(steps: int, s: float = S) -> float:
    """The exact std of the ancestral chain's output on N(0, s^2) data with the exact eps_hat: every step is
    x' = c_k x + sqrt(beta~_k) z with c_k = (1 - beta_k / sqrt(1 - alpha_bar_k) e_k) / sqrt(1 - beta_k), where
    eps_hat = e_k x in DDPM's coordinates, so the variance follows V' = c_k^2 V + beta~_k from V = 1."""
    alpha_bar = ddpm_alpha_bars(1000)[respaced_indices(steps)].tolist()
    variance = 1.0
    for k in reversed(range(steps)):
        prev = alpha_bar[k - 1] if k > 0 else 1.0
        beta = 1 - alpha_bar[k] / prev
        sigma = math.sqrt((1 - alpha_bar[k]) / alpha_bar[k])
        e = sigma / (s**2 + sigma**2) / math.sqrt(alpha_bar[k])
        c = (1 - beta / math.sqrt(1 - alpha_bar[k]) * e) / math.sqrt(1 - beta)
        variance = c * c * variance + (beta * (1 - prev) / (1 - alpha_bar[k]) if k > 0 else 0.0)
    return math.sqrt(variance)


@pytest.mark.parametrize("steps", [1000, 100, 20])
def test_the_ancestral_chain_has_the_exact_spread_of_its_gaussian_recursion(steps):
    # fewer steps leave the chain too narrow (std 0.99 s at 1000 steps, 0.94 s at 100, 0.78 s at 20): the sampler's
    # spread must be that of the recursion, to Monte Carlo error
    method = DDPM((2,))
    x, nfe = ancestral_sample(method, gaussian_eps(), 20_000, steps=steps, generator=gen(6))
    expected = ancestral_chain_std(steps)
    assert nfe == steps
    assert spread_error(x, expected) < 4
    assert x.double().mean(0).abs().max() < 4 * S / math.sqrt(20_000)
    # the check can fail: the noise prediction of data with s = 0.6 lands elsewhere, far outside the bound
    wrong, _ = ancestral_sample(method, gaussian_eps(0.6), 20_000, steps=steps, generator=gen(6))
    assert spread_error(wrong, expected) > 20
    if steps == 1000:
        assert 0.99 < expected / S < 0.995


def test_ddim_with_many_steps_lands_on_the_gaussian():
    x, nfe = ddim_sample(DDPM((2,)), gaussian_eps(), 20_000, steps=200, generator=gen(6))
    assert nfe == 200 and spread_error(x) < 5      # Monte Carlo and Euler's error at 200 steps


def test_ddpm_s_samplers_take_an_edm_denoiser_too():
    method = EDM((2,), sigma_data=S)
    x, _ = ancestral_sample(method, gaussian_denoiser_prediction(method), 20_000, steps=1000, generator=gen(7))
    assert spread_error(x, ancestral_chain_std(1000)) < 4
    x, _ = ddim_sample(method, gaussian_denoiser_prediction(method), 20_000, steps=200, generator=gen(7))
    assert spread_error(x) < 7


@pytest.mark.parametrize("churn", [0.0, 10.0, 80.0])
def test_edm_s_stochastic_sampler_lands_on_the_gaussian(churn):
    method = EDM((2,), sigma_data=S, sigma_max=20.0)
    x, nfe = stochastic_sample(method, gaussian_denoiser_prediction(method), 20_000, steps=40, churn=churn,
                               generator=gen(8))
    assert nfe == 2 * 40 - 1
    assert spread_error(x) < 6
    # the check can fail: the denoiser of data with s = 0.45 (10% narrower) lands far outside the bound
    if churn == 80.0:
        x_off, _ = stochastic_sample(method, gaussian_denoiser_prediction(method, s=0.45), 20_000, steps=40,
                                     churn=churn, generator=gen(8))
        assert spread_error(x_off) > 10


def test_edm_sigmas_are_the_rho_grid_then_zero():
    method = EDM((2,), sigma_min=0.002, sigma_max=80.0, rho=7.0)
    s = edm_sigmas(method, 18)
    assert len(s) == 19 and s[-1] == 0 and s[0].item() == pytest.approx(80.0) and s[-2].item() == pytest.approx(0.002)
    assert (s.diff() < 0).all()


def test_it_trains_samples_and_reloads_through_the_one_trainer(tmp_path):
    method = DDPM((2,))
    data = (S * torch.randn(2000, 2, generator=gen(9))).float()
    torch.manual_seed(0)
    net = nets.MLP(2, extra=0, width=32, depth=2)
    config = train.TrainConfig(steps=150, batch_size=64, large_batch_size=64, lr=3e-3, warmup=10, device="cpu")
    result = train.train(method, net, data, config, out_dir=tmp_path, progress=False)
    assert sum(result.losses[-20:]) / 20 < 0.8 * sum(result.losses[:20]) / 20        # it learns
    loaded, ema, _ = load_model(tmp_path, device="cpu")
    assert isinstance(loaded, DDPM) and loaded.to_config() == method.to_config()
    assert method_from_config(method.to_config()).to_config() == method.to_config()
    x, nfe = ddim_sample(loaded, loaded.predictor(ema), 500, steps=10, generator=gen(10))
    assert nfe == 10 and torch.isfinite(x).all()
    # the generic ODE sampler integrates the same dx/d sigma = eps_hat (time "linear", down to sigma = 0)
    out = sampling.sample(loaded, loaded.predictor(ema), 500, solver="heun", steps=10, generator=gen(10))
    assert out.nfe == 20 and torch.isfinite(out.x).all()


def test_bad_input():
    with pytest.raises(ValueError, match=r"beta_start < beta_end < 1 expected, got beta_start=0.1, beta_end=0.01"):
        DDPM((2,), beta_start=0.1, beta_end=0.01)
    with pytest.raises(ValueError, match=r"steps must be <= 1000 \(a respacing of the 1000-step schedule\), got 2000"):
        ancestral_sample(DDPM((2,)), gaussian_eps(), 4, steps=2000)
    with pytest.raises(TypeError, match=r"DDPM's samplers need a DDPM \(methods.DDPM\) or a denoiser .* got PFGM"):
        ddim_sample(PFGM(hyperparameter_rule(2, 1.0), (2,)), gaussian_eps(), 4, steps=10)
    with pytest.raises(TypeError, match=r"stochastic_sample is EDM's sampler .* got DDPM"):
        stochastic_sample(DDPM((2,)), gaussian_eps(), 4)
    with pytest.raises(ValueError, match=r"churn must be finite and >= 0, got -1"):
        stochastic_sample(EDM((2,)), gaussian_eps(), 4, churn=-1)
    with pytest.raises(ValueError, match=r"power must be finite and > 0, got 0"):
        respaced_indices(10, power=0)
    with pytest.raises(ValueError, match=r"the ddpm target needs batch.y"):
        DDPM((2,)).target(torch.zeros(3, 2), torch.ones(3), Batch(large=torch.zeros(3, 2)))
