"""Sampling from a trained method: the ODE solvers every method shares, DDPM's ancestral chain, the likelihood.

    ode         integrate (Euler, Heun, RK45), sample, encode, time_grid, ODEResult
    ancestral   ancestral_sample, ddim_sample, respaced_indices, ddpm_alpha_bars (DDPM's samplers, on a DDPM or a denoiser)
    stochastic  stochastic_sample, edm_sigmas (EDM's Algorithm 2, S_churn)
    likelihood  log_likelihood (the change of variables along the forward ODE), divergence
"""
from .ancestral import ancestral_sample, ddim_sample, ddpm_alpha_bars, respaced_indices
from .likelihood import EXACT_DIVERGENCE_MAX_DIM, divergence, log_likelihood
from .ode import SOLVERS, ODEResult, encode, integrate, sample, time_grid
from .stochastic import edm_sigmas, stochastic_sample

__all__ = ["ancestral_sample", "ddim_sample", "ddpm_alpha_bars", "respaced_indices", "edm_sigmas", "stochastic_sample", "EXACT_DIVERGENCE_MAX_DIM", "divergence", "log_likelihood", "SOLVERS",
           "ODEResult", "encode", "integrate", "sample", "time_grid"]
