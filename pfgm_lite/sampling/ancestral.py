"""DDPM's ancestral sampler (Ho et al. 2020) on a denoiser trained in the EDM parametrization (methods.Denoiser).

The equivalence x_VP = sqrt(alpha_bar) x_VE, sigma^2 = (1 - alpha_bar) / alpha_bar turns the denoiser D into DDPM's
noise prediction eps_hat = (x_VE - D) / sigma. A sampler beyond the ODE is a function of this shape:
(method, predict, n, steps, generator, device, progress) -> (samples (n, *shape), NFE).
"""
from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

from ..checks import check_int
from ..methods import Denoiser, Predictor


def ddpm_alpha_bars(steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """alpha_bar_t = prod_{s <= t} (1 - beta_s) of DDPM's linear schedule (Ho et al. 2020), t = 1..steps: (steps,)."""
    check_int("steps", steps)
    betas = torch.linspace(beta_start, beta_end, steps, dtype=torch.float64)
    return torch.cumprod(1 - betas, dim=0)


def ancestral_sample(method: Denoiser, predict: Predictor, n: int, steps: int = 1000,
                     generator: torch.Generator | None = None, device: torch.device | str = "cpu",
                     progress: bool = False) -> tuple[torch.Tensor, int]:
    """DDPM's ancestral sampler (Ho et al. 2020, Alg. 2) on a denoiser trained in the EDM parametrization.

    The 1000-step linear schedule, respaced to `steps` steps (alpha_bar at evenly spaced indices) when steps < 1000.
    x_VP = sqrt(alpha_bar) x_VE and sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t) turn D into eps_hat = (x_VE - D) / sigma_t;
    each step x_{t-1} = (x_t - beta_t / sqrt(1 - alpha_bar_t) eps_hat) / sqrt(alpha_t) + sqrt(beta~_t) z, no noise at the last.
    returns: samples (n, *shape), NFE = steps
    """
    if not isinstance(method, Denoiser):
        raise TypeError(f"ancestral_sample needs a denoiser (EDM or PFGM++: methods.Denoiser), got "
                        f"{type(method).__name__}")
    check_int("n", n)
    check_int("steps", steps)
    if steps > 1000:
        raise ValueError(f"steps must be <= 1000 (a respacing of DDPM's 1000-step schedule), got {steps}")
    full = ddpm_alpha_bars(1000)
    idx = torch.linspace(0, 999, steps).round().long()
    alpha_bar = full[idx]
    alpha_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])
    betas = 1 - alpha_bar / alpha_bar_prev
    x = torch.randn(n, *method.data_shape, generator=generator, dtype=torch.float64)      # x_T in VP coordinates
    for k in tqdm(reversed(range(steps)), total=steps, disable=not progress, desc="ddpm", leave=False):
        sigma = math.sqrt((1 - alpha_bar[k]) / alpha_bar[k])
        x_ve = (x / math.sqrt(alpha_bar[k])).float().to(device)
        t = torch.full((n,), sigma, device=device)
        denoised = method.denoise(predict(x_ve, t).to(device), x_ve, t).double().cpu()
        eps = (x / math.sqrt(alpha_bar[k]) - denoised) / sigma
        x = (x - betas[k] / math.sqrt(1 - alpha_bar[k]) * eps) / math.sqrt(1 - betas[k])
        if k > 0:
            var = betas[k] * (1 - alpha_bar_prev[k]) / (1 - alpha_bar[k])
            x = x + math.sqrt(var) * torch.randn(x.shape, generator=generator, dtype=torch.float64)
    return x.float(), steps
