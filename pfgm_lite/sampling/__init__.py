"""Sampling from a trained method: the ODE solvers every method shares, DDPM's ancestral chain, the likelihood.

    ode         integrate (Euler, Heun, RK45), sample, encode, time_grid, ODEResult
    ancestral   ddpm_alpha_bars, ancestral_sample (DDPM's stochastic sampler on a denoiser)
    likelihood  log_likelihood (the change of variables along the forward ODE), divergence
"""
from .ancestral import ancestral_sample, ddpm_alpha_bars
from .likelihood import EXACT_DIVERGENCE_MAX_DIM, divergence, log_likelihood
from .ode import SOLVERS, ODEResult, encode, integrate, sample, time_grid

__all__ = ["ancestral_sample", "ddpm_alpha_bars", "EXACT_DIVERGENCE_MAX_DIM", "divergence", "log_likelihood", "SOLVERS",
           "ODEResult", "encode", "integrate", "sample", "time_grid"]
