"""PFGM++ (Xu et al., ICML 2023): D extra dimensions; D = 1 is PFGM's geometry, D -> infinity is diffusion (EDM).

Data y in R^N sit at the origin of D extra dimensions. Only r = ||z|| (z in R^D) matters, by symmetry, so one number
carries the extra dimensions. The field of a data point, (x~ - y~) / ||x~ - y~||^{N+D}, gives the perturbation kernel
    p_r(x | y) ∝ (||x - y||^2 + r^2)^{-(N+D)/2}:   x = y + R u,  u uniform on the sphere,  R^2 / r^2 ~ BetaPrime(N/2, D/2)
(drawn as b ~ Beta(N/2, D/2), R = r sqrt(b / (1 - b)), b capped at 1 - 1e-3 against infinite radii as in the official
code; the official code also floors b at 1e-3, which never binds for images (N = 3072: b ~ N / (N + D) >= 0.6) but
would move most draws of N = 2, D = 2048 (b ~ 1/1000) to one radius, so we do not).
With r = sigma sqrt(D) the kernel tends to N(y, sigma^2 I) as D -> infinity: this alignment lets PFGM++ reuse EDM's
noise levels, preconditioning, loss and sampler (the official code is EDM's with this kernel):
  training   ln sigma ~ N(P_mean, P_std^2), r = sigma sqrt(D), target: the clean y through EDM's preconditioning
  prior      x = R u at r_max = sigma_max sqrt(D), from the same kernel
  ODE        dx/dr = E_x / E_r = (x - E[y | x, r]) / r, i.e. dx/d ln sigma = x - D(x, sigma)  (EDM's ODE, same weights)
What D = 1 shares with methods.PFGM: the geometry (one extra coordinate; its prior at r_max is PFGM's Poisson kernel,
R^2/r^2 ~ BetaPrime(N/2, 1/2)) and the field lines. What differs: the objective (a denoiser of the single clean
point, not the normalized field of a large batch, so no large-batch bias), the training distribution (the exact
kernel at lognormal sigma, not Gaussian noise scaled by (1+tau)^m), the prior (no clipping: the kernel at r_max), and
the time variable (ln sigma = ln r - ln sqrt(D) on EDM's rho grid, not ln z on a geometric one).
"""
from __future__ import annotations

import math

import torch

from ..checks import check_int, check_positive
from .denoiser import Denoiser


def sample_kernel_radius(n: int, N: int, D: float, r: torch.Tensor | float, generator: torch.Generator | None = None,
                         clip: float = 1e-3, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Radii R of the PFGM++ kernel at r: R^2 / r^2 ~ BetaPrime(N/2, D/2), b = R^2 / (R^2 + r^2) capped at 1 - clip
    (R <= r sqrt((1 - clip) / clip), ~32 r); (n,)."""
    check_int("n", n)
    check_int("N", N)
    D = check_positive("D", D)
    a = torch._standard_gamma(torch.full((n,), N / 2, dtype=torch.float64), generator=generator)
    c = torch._standard_gamma(torch.full((n,), D / 2, dtype=torch.float64), generator=generator)
    b = (a / (a + c)).clamp(max=1 - clip) if clip > 0 else a / (a + c)
    return (torch.as_tensor(r, dtype=torch.float64) * torch.sqrt(b / (1 - b))).to(dtype)


def uniform_directions(n: int, N: int, generator: torch.Generator | None = None,
                       dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """n points uniform on the unit sphere of R^N (normalized Gaussians): (n, N)."""
    g = torch.randn(n, N, generator=generator, dtype=dtype)
    return g / g.norm(dim=1, keepdim=True).clamp_min(torch.finfo(dtype).tiny)


class PFGMpp(Denoiser):
    """PFGM++ with D extra dimensions as a methods.Method (t = sigma, r = sigma sqrt(D)); see the module doc.

    D: extra dimensions (any D > 0; D = 1 is PFGM's geometry, D -> infinity is EDM); the other settings are EDM's.
    """

    name = "pfgmpp"

    def __init__(self, data_shape: tuple[int, ...], D: float, **edm_options):
        super().__init__(data_shape, **edm_options)
        self.D = check_positive("D", D)

    def perturb(self, y: torch.Tensor, generator: torch.Generator | None = None):
        """x = y + R u with R from the kernel at r = sigma sqrt(D): returns x (B, *shape), sigma (B,)."""
        self.check_data("y", y)
        b = y.shape[0]
        sigma = self.draw_sigma(b, generator)
        radius = sample_kernel_radius(b, self.N, self.D, sigma.double() * math.sqrt(self.D), generator)
        offset = (radius[:, None] * uniform_directions(b, self.N, generator)).reshape(y.shape)
        return y + offset.to(y.device, y.dtype), sigma.to(y.device, y.dtype)

    def sample_prior(self, n: int, generator: torch.Generator | None = None):
        """x = R u from the kernel at r_max = sigma_max sqrt(D): (n, *shape), sigma0 = sigma_max (n,)."""
        check_int("n", n)
        radius = sample_kernel_radius(n, self.N, self.D, self.sigma_max * math.sqrt(self.D), generator)
        x = radius[:, None] * uniform_directions(n, self.N, generator)
        return x.reshape(n, *self.data_shape), torch.full((n,), self.sigma_max)

    def log_weights(self, d2: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """The PFGM++ field's weights: -(N + D)/2 ln(||x - y||^2 + r^2), r = sigma sqrt(D)."""
        r2 = self.D * sigma[:, None] ** 2
        return -0.5 * (self.N + self.D) * torch.log(d2 + r2)

    def to_config(self) -> dict:
        return dict(name=self.name, data_shape=list(self.data_shape), D=self.D, **self._options())
