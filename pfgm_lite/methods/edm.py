"""EDM, the variance-exploding diffusion model in its "elucidated" form (Karras et al. 2022), as a Method.

  perturbation   x = y + sigma n,  n ~ N(0, I),  ln sigma ~ N(P_mean, P_std^2)
  denoiser       D(x, sigma) = c_skip x + c_out F(c_in x, ln sigma), the loss and the ODE: methods.denoiser
  sampling       the probability-flow ODE dx/d sigma = (x - D) / sigma, i.e. dx/d ln sigma = x - D, from x ~ N(0, sigma_max^2 I)
                 down to sigma_min on EDM's grid sigma_i = (sigma_max^{1/rho} + i/n (sigma_min^{1/rho} - sigma_max^{1/rho}))^rho
(EDM's own sampler ends with one more Euler step to sigma = 0, which outputs D(x, sigma_min); like PFGM's sampler we stop
at sigma_min = 0.002 and drop nothing.) The network's condition is ln sigma (EDM feeds ln(sigma) / 4 to its embedding;
our Fourier features take the log directly). DDPM's ancestral sampler on the same denoiser is sampling.ancestral_sample.
"""
from __future__ import annotations

import torch

from ..checks import batch_view, check_int
from .denoiser import Denoiser

#: EDM's defaults for images in [-1, 1] (Karras et al. 2022): sigma_data, sigma_min, sigma_max, rho, P_mean, P_std
EDM_IMAGE_DEFAULTS = dict(sigma_data=0.5, sigma_min=0.002, sigma_max=80.0, rho=7.0, p_mean=-1.2, p_std=1.2)


class EDM(Denoiser):
    """EDM (Karras et al. 2022) as a methods.Method: Gaussian perturbation, sigma_max sigma_max * N(0, I) prior.

    data_shape: shape of one sample; the rest are EDM's settings (EDM_IMAGE_DEFAULTS for images in [-1, 1]; for
    2D toys sigma_max ~ 5 and sigma_data = the data's std fit better, see benchmarks/quality_vs_nfe.py).
    """

    name = "edm"

    def perturb(self, y: torch.Tensor, generator: torch.Generator | None = None):
        """x = y + sigma n, sigma from draw_sigma: returns x (B, *shape), sigma (B,)."""
        self.check_data("y", y)
        sigma = self.draw_sigma(y.shape[0], generator).to(y.device, y.dtype)
        noise = torch.randn(y.shape, generator=generator, dtype=y.dtype).to(y.device)
        return y + batch_view(sigma, y) * noise, sigma

    def sample_prior(self, n: int, generator: torch.Generator | None = None):
        """x = sigma_max n, n ~ N(0, I): (n, *shape), sigma0 = sigma_max (n,)."""
        check_int("n", n)
        return self.sigma_max * torch.randn(n, *self.data_shape, generator=generator), torch.full((n,), self.sigma_max)

    def log_weights(self, d2: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Gaussian kernel: -||x - y||^2 / (2 sigma^2)."""
        return -d2 / (2 * sigma[:, None] ** 2)

    def to_config(self) -> dict:
        return dict(name=self.name, data_shape=list(self.data_shape), **self._options())
