"""EDM's stochastic sampler (Karras et al. 2022, Algorithm 2): Heun's method on the probability-flow ODE with "churn",
noise added before each step and then removed by the step.

  grid    sigma_i = (sigma_max^{1/rho} + i/(n-1) (sigma_min^{1/rho} - sigma_max^{1/rho}))^rho, i < n; sigma_n = 0
  churn   gamma_i = min(S_churn / n, sqrt(2) - 1) when S_tmin <= sigma_i <= S_tmax, else 0
          sigma_hat = sigma_i (1 + gamma_i),  x_hat = x_i + sqrt(sigma_hat^2 - sigma_i^2) S_noise eps
  step    d = (x_hat - D(x_hat, sigma_hat)) / sigma_hat,  x_{i+1} = x_hat + (sigma_{i+1} - sigma_hat) d,
          and Heun's correction with d' at sigma_{i+1} unless sigma_{i+1} = 0
NFE = 2 n - 1. S_churn = 0 is Algorithm 1, EDM's deterministic Heun sampler, ending at sigma = 0 (the ODE sampler of
sampling.ode stops at sigma_min instead).
"""
from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

from ..checks import check_int, check_positive
from ..methods import EDM, Predictor


def edm_sigmas(method: EDM, steps: int) -> torch.Tensor:
    """EDM's noise levels for `steps` steps: (steps + 1,) float64, sigma_max ... sigma_min, then 0."""
    check_int("steps", steps)
    if steps == 1:
        return torch.tensor([method.sigma_max, 0.0], dtype=torch.float64)
    i = torch.arange(steps, dtype=torch.float64)
    a, b = method.sigma_max ** (1 / method.rho), method.sigma_min ** (1 / method.rho)
    return torch.cat([(a + i / (steps - 1) * (b - a)) ** method.rho, torch.zeros(1, dtype=torch.float64)])


def stochastic_sample(method: EDM, predict: Predictor, n: int, steps: int = 18, churn: float = 0.0,
                      s_tmin: float = 0.0, s_tmax: float = math.inf, s_noise: float = 1.0,
                      generator: torch.Generator | None = None, device: torch.device | str = "cpu",
                      progress: bool = False) -> tuple[torch.Tensor, int]:
    """EDM's Algorithm 2 with S_churn = churn (see the module doc): samples (n, *shape) and NFE = 2 steps - 1.

    x_0 = sigma_max eps as in method.sample_prior; the fresh noise and x_0 come from `generator`.
    """
    if not isinstance(method, EDM):
        raise TypeError(f"stochastic_sample is EDM's sampler (methods.EDM: its prior is sigma_max N(0, I)), got "
                        f"{type(method).__name__}")
    check_int("n", n)
    check_int("steps", steps)
    churn = check_positive("churn", churn, allow_zero=True)
    s_tmin = check_positive("s_tmin", s_tmin, allow_zero=True)
    if not (isinstance(s_tmax, (int, float)) and s_tmax > s_tmin):
        raise ValueError(f"s_tmax must be a number above s_tmin = {s_tmin}, got {s_tmax!r}")
    s_noise = check_positive("s_noise", s_noise)
    sigmas = edm_sigmas(method, steps).tolist()
    gamma_max = min(churn / steps, math.sqrt(2) - 1)
    x, _ = method.sample_prior(n, generator=generator)
    x = x.double()
    nfe = 0

    def slope(x: torch.Tensor, sigma: float) -> torch.Tensor:
        nonlocal nfe
        nfe += 1
        xf = x.float().to(device)
        t = torch.full((n,), sigma, device=device)
        denoised = method.denoise(predict(xf, t).to(device), xf, t).double().cpu()
        return (x - denoised) / sigma

    for i in tqdm(range(steps), disable=not progress, desc="edm", leave=False):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        gamma = gamma_max if s_tmin <= sigma <= s_tmax else 0.0
        sigma_hat = sigma * (1 + gamma)
        if gamma > 0:
            noise = torch.randn(x.shape, generator=generator, dtype=torch.float64)
            x = x + math.sqrt(sigma_hat**2 - sigma**2) * s_noise * noise
        d = slope(x, sigma_hat)
        x_next = x + (sigma_next - sigma_hat) * d
        if sigma_next > 0:
            x_next = x + (sigma_next - sigma_hat) * 0.5 * (d + slope(x_next, sigma_next))
        x = x_next
    return x.float(), nfe
