"""DDPM's samplers (Ho et al. 2020; Song et al. 2021): the ancestral chain and DDIM, on DDPM's 1000-step schedule.

They run on a DDPM (methods.DDPM, which predicts eps) or on a denoiser trained in the EDM parametrization
(methods.Denoiser): x_VP = sqrt(alpha_bar) x_VE and sigma^2 = (1 - alpha_bar) / alpha_bar turn a denoiser D into
DDPM's noise prediction eps_hat = (x_VE - D) / sigma. A sampler beyond the ODE is a function of this shape:
(method, predict, n, steps, generator, device, progress) -> (samples (n, *shape), NFE).
Fewer steps than the schedule's T use a subsequence of its levels (respaced_indices; Nichol & Dhariwal 2021 for the
chain, Song et al. 2021 for DDIM, whose "quadratic" spacing is power = 2).
"""
from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

from ..checks import check_int, check_positive
from ..methods import DDPM, Denoiser, Predictor
from ..methods.ddpm import DDPM_STEPS, ddpm_alpha_bars

__all__ = ["ancestral_sample", "ddim_sample", "ddpm_alpha_bars", "respaced_indices"]


def respaced_indices(steps: int, total: int = DDPM_STEPS, power: float = 1.0) -> torch.Tensor:
    """The levels a `steps`-step sampler visits among the schedule's `total`: round((total - 1) (i / (steps - 1))^power),
    i = 0..steps-1, made strictly increasing; (steps,) int64 from 0 to total - 1 ([total - 1] for one step).

    power 1: evenly spaced (Ho et al.'s respacing); power 2: DDIM's "quadratic" (denser near the data).
    """
    check_int("steps", steps)
    check_positive("power", power)
    if steps > total:
        raise ValueError(f"steps must be <= {total} (a respacing of the {total}-step schedule), got {steps}")
    if steps == 1:
        return torch.tensor([total - 1])
    u = torch.linspace(0, 1, steps, dtype=torch.float64) ** power
    idx = (u * (total - 1)).round().long()
    for i in range(1, steps):                       # ties near 0 at a large power: push each level above the last
        idx[i] = max(int(idx[i]), int(idx[i - 1]) + 1)
    for i in range(steps - 2, -1, -1):              # ... and keep the last one at total - 1
        idx[i] = min(int(idx[i]), int(idx[i + 1]) - 1)
    return idx


def _schedule(method) -> torch.Tensor:
    if isinstance(method, DDPM):
        return method.alpha_bars
    if isinstance(method, Denoiser):
        return ddpm_alpha_bars(DDPM_STEPS)
    raise TypeError(f"DDPM's samplers need a DDPM (methods.DDPM) or a denoiser (EDM or PFGM++: methods.Denoiser), "
                    f"got {type(method).__name__}")


def _noise(method, predict: Predictor, x_ve: torch.Tensor, sigma: float, device) -> torch.Tensor:
    """eps_hat at (x_VE, sigma): the DDPM's prediction, or (x_VE - D) / sigma for a denoiser; float64 on the CPU."""
    x = x_ve.float().to(device)
    t = torch.full((x.shape[0],), sigma, device=device)
    prediction = predict(x, t).to(device)
    if isinstance(method, DDPM):
        return prediction.double().cpu().reshape(x_ve.shape)
    return ((x_ve - method.denoise(prediction, x, t).double().cpu()) / sigma)


def ancestral_sample(method: DDPM | Denoiser, predict: Predictor, n: int, steps: int = 1000,
                     generator: torch.Generator | None = None, device: torch.device | str = "cpu",
                     progress: bool = False, power: float = 1.0) -> tuple[torch.Tensor, int]:
    """DDPM's ancestral sampler (Ho et al. 2020, Alg. 2) on a DDPM or a denoiser.

    The schedule's levels respaced_indices(steps, T, power) (all T when steps = T), with
    beta_k = 1 - alpha_bar_k / alpha_bar_prev recomputed on them; each step
    x_{k-1} = (x_k - beta_k / sqrt(1 - alpha_bar_k) eps_hat) / sqrt(1 - beta_k) + sqrt(beta~_k) z in DDPM's coordinates,
    beta~_k = beta_k (1 - alpha_bar_prev) / (1 - alpha_bar_k), no noise at the last step.
    returns: samples (n, *shape) in the method's coordinates (x = x_0), NFE = steps
    """
    alpha_bars_full = _schedule(method)
    check_int("n", n)
    idx = respaced_indices(steps, len(alpha_bars_full), power)
    alpha_bar = alpha_bars_full[idx]
    alpha_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])
    betas = 1 - alpha_bar / alpha_bar_prev
    x = torch.randn(n, *method.data_shape, generator=generator, dtype=torch.float64)      # x_T in DDPM's coordinates
    for k in tqdm(reversed(range(steps)), total=steps, disable=not progress, desc="ddpm", leave=False):
        sigma = math.sqrt((1 - alpha_bar[k]) / alpha_bar[k])
        eps = _noise(method, predict, x / math.sqrt(alpha_bar[k]), sigma, device)
        x = (x - betas[k] / math.sqrt(1 - alpha_bar[k]) * eps) / math.sqrt(1 - betas[k])
        if k > 0:
            var = betas[k] * (1 - alpha_bar_prev[k]) / (1 - alpha_bar[k])
            x = x + math.sqrt(var) * torch.randn(x.shape, generator=generator, dtype=torch.float64)
    return x.float(), steps


def ddim_sample(method: DDPM | Denoiser, predict: Predictor, n: int, steps: int = 50,
                generator: torch.Generator | None = None, device: torch.device | str = "cpu",
                progress: bool = False, power: float = 1.0) -> tuple[torch.Tensor, int]:
    """DDIM with eta = 0 (Song et al. 2021, eq. 12) on the levels respaced_indices(steps, T, power), then to 0.

    In the variance-exploding coordinates x = x_k / sqrt(alpha_bar_k) one step is x <- x + (sigma_next - sigma) eps_hat,
    Euler's method on dx/d sigma = eps_hat (sigma_next = 0 after the lowest level: x becomes the clean estimate).
    returns: samples (n, *shape), NFE = steps
    """
    alpha_bars_full = _schedule(method)
    check_int("n", n)
    idx = respaced_indices(steps, len(alpha_bars_full), power)
    sigmas = torch.sqrt((1 - alpha_bars_full[idx]) / alpha_bars_full[idx]).tolist()
    x_vp = torch.randn(n, *method.data_shape, generator=generator, dtype=torch.float64)
    x = x_vp * math.sqrt(1 + sigmas[-1] ** 2)                                          # x_T / sqrt(alpha_bar_T)
    for k in tqdm(reversed(range(steps)), total=steps, disable=not progress, desc="ddim", leave=False):
        sigma_next = sigmas[k - 1] if k > 0 else 0.0
        x = x + (sigma_next - sigmas[k]) * _noise(method, predict, x, sigmas[k], device)
    return x.float(), steps

