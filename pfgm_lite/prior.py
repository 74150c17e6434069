"""The PFGM prior on the plane z = z_max (Xu et al. 2022, Sec. 3.3, App. A.4).

Far from the data the field is that of one charge at the origin, whose flux through the plane z = z_max
is the Poisson kernel p(x) = 2 z_max / (S_N (||x||^2 + z_max^2)^{(N+1)/2}) (physics.poisson_kernel):
the uniform hemisphere projected radially. Its radius obeys R^2 / z_max^2 ~ BetaPrime(N/2, 1/2), a heavy
tail, so the official code (methods.py::prior_sampling) clips R to [1, upper_norm]. `clip="ray"` instead slides far points back along their own
ray from the origin to ||x|| = upper_norm (starting them at z = z_max upper_norm / R < z_max), which keeps
them on their field line far from the data, where lines are radial.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import special

from .checks import check_int, check_positive
from .physics import log_poisson_kernel, sample_poisson_kernel

CLIP_MODES = ("radius", "ray", "none")


@dataclass
class PriorSample:
    """Start points of the backward ODE: x (n, N), z (n,) start heights, clipped (n,) bool."""

    x: torch.Tensor
    z: torch.Tensor
    clipped: torch.Tensor


def sample_prior(n: int, N: int, z_max: float, upper_norm: float | None = None, clip: str = "radius",
                 generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32) -> PriorSample:
    """Draw n start points of the backward ODE from the PFGM prior on the plane z = z_max.

    clip="radius": the official code's rule, R clipped to [1, upper_norm], all start at z_max;
    clip="ray":    points with R > upper_norm move along their ray to R = upper_norm, z = z_max upper_norm / R
                   (z kept >= z_max / 100: near-horizontal rays carry almost no probability);
    clip="none":   the exact prior.
    """
    check_int("n", n)
    check_int("N", N)
    z_max = check_positive("z_max", z_max)
    if clip not in CLIP_MODES:
        raise ValueError(f"clip must be one of {CLIP_MODES}, got {clip!r}")
    if clip != "none":
        if upper_norm is None:
            raise ValueError(f"upper_norm is required with clip={clip!r}")
        upper_norm = check_positive("upper_norm", upper_norm)
    x = sample_poisson_kernel(n, N, z_max, generator=generator, dtype=dtype)
    z = torch.full((n,), z_max, dtype=dtype)
    r = x.norm(dim=1)
    clipped = torch.zeros(n, dtype=torch.bool) if clip == "none" else r > upper_norm
    if clip == "radius":
        new_r = r.clamp(min=min(1.0, upper_norm), max=upper_norm)
        x = x * (new_r / r.clamp_min(1e-30))[:, None]
    elif clip == "ray":
        factor = torch.where(clipped, upper_norm / r, torch.ones_like(r))
        x, z = x * factor[:, None], (z * factor).clamp_min(z_max / 100)
    return PriorSample(x=x, z=z, clipped=clipped)


def clipped_fraction(N: int, z_max: float, upper_norm: float) -> float:
    """P(R > upper_norm) under the exact prior: 1 - I_u(N/2, 1/2) with u = U^2 / (U^2 + z_max^2), U = upper_norm."""
    check_int("N", N)
    z_max = check_positive("z_max", z_max)
    upper_norm = check_positive("upper_norm", upper_norm)
    u = upper_norm**2 / (upper_norm**2 + z_max**2)
    return float(1.0 - special.betainc(N / 2, 0.5, u))


def prior_radius_cdf(r, N: int, z_max: float):
    """CDF of the prior radius R = ||x||: P(R <= r) = I_{r^2/(r^2+z_max^2)}(N/2, 1/2)."""
    r = np.asarray(r, dtype=np.float64)
    return special.betainc(N / 2, 0.5, r**2 / (r**2 + z_max**2))


def log_prior_density(x: torch.Tensor, z_max: float) -> torch.Tensor:
    """Log density of the (unclipped) prior on the plane: (n, N) -> (n,). Same formula as physics.log_poisson_kernel."""
    return log_poisson_kernel(x, z_max)
