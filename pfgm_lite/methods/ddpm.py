"""DDPM trained as DDPM (Ho et al. 2020) as a Method: noise prediction on the linear beta schedule with T = 1000 steps.

  schedule    beta_k linear from 1e-4 to 0.02, alpha_bar_k = prod_{j <= k} (1 - beta_j), k = 1..T
  training    k ~ U{1..T}, x_k = sqrt(alpha_bar_k) y + sqrt(1 - alpha_bar_k) eps,  loss ||eps_theta(x_k, k) - eps||^2
  sampling    the ancestral chain (Ho et al., Alg. 2) or DDIM with eta = 0 (Song et al. 2021): sampling.ancestral
The method's scale t is sigma_k = sqrt((1 - alpha_bar_k) / alpha_bar_k), and x lives in the variance-exploding
coordinates x = x_k / sqrt(alpha_bar_k) = y + sigma_k eps that every other method here uses, so the one trainer and
the one ODE sampler carry it unchanged; the network still sees DDPM's x_k = x / sqrt(1 + sigma^2) and predicts eps.
In these coordinates DDIM (eta = 0) is Euler's method on dx/d sigma = eps_hat(x, sigma), which is this method's
velocity (time "linear"); DDIM's last step runs to sigma = 0, the generic ODE sampler stops at the lowest level sigma_1.
Ours: the network's condition is ln sigma_k instead of the index k (a one-to-one map of the T levels; our Fourier
features read a log scale, as for EDM); the data are used as they come (Ho et al. scale images to [-1, 1]; the 2D
toys have a std of 0.5 to 1.4 per coordinate).
"""
from __future__ import annotations

import torch

from ..checks import batch_view, check_int, check_positive
from .base import Batch, Method, Predictor
from .edm import EDM

#: DDPM's schedule (Ho et al. 2020): T steps, beta linear from BETA_START to BETA_END
DDPM_STEPS, BETA_START, BETA_END = 1000, 1e-4, 0.02


def ddpm_alpha_bars(steps: int = DDPM_STEPS, beta_start: float = BETA_START, beta_end: float = BETA_END
                    ) -> torch.Tensor:
    """alpha_bar_k = prod_{j <= k} (1 - beta_j) of DDPM's linear schedule (Ho et al. 2020), k = 1..steps: (steps,)
    float64."""
    check_int("steps", steps)
    betas = torch.linspace(beta_start, beta_end, steps, dtype=torch.float64)
    return torch.cumprod(1 - betas, dim=0)


class DDPM(Method):
    """DDPM with eps-prediction on its 1000-step linear schedule; see the module doc. t = sigma_k (B,)."""

    name = "ddpm"
    time = "linear"
    rho = 7.0                # the generic ODE sampler's grid in sigma (DDIM, sampling.ddim_sample, is DDPM's own)

    def __init__(self, data_shape: tuple[int, ...], steps: int = DDPM_STEPS, beta_start: float = BETA_START,
                 beta_end: float = BETA_END):
        super().__init__(data_shape)
        self.steps = check_int("steps", steps, minimum=2)
        self.beta_start = check_positive("beta_start", beta_start)
        self.beta_end = check_positive("beta_end", beta_end)
        if not self.beta_start < self.beta_end < 1:
            raise ValueError(f"beta_start < beta_end < 1 expected, got beta_start={beta_start}, beta_end={beta_end}")
        self.alpha_bars = ddpm_alpha_bars(self.steps, self.beta_start, self.beta_end)       # (T,) float64
        self.sigmas = torch.sqrt((1 - self.alpha_bars) / self.alpha_bars)                    # (T,) increasing
        self.t_min = float(self.sigmas[0])   # the generic ODE sampler stops at the lowest level (0.01 for T = 1000)

    def perturb(self, y: torch.Tensor, generator: torch.Generator | None = None):
        """k ~ U{1..T}, x = y + sigma_k eps: x (B, *shape), sigma_k (B,)."""
        self.check_data("y", y)
        k = torch.randint(0, self.steps, (y.shape[0],), generator=generator)
        sigma = self.sigmas[k].to(y.device, y.dtype)
        noise = torch.randn(y.shape, generator=generator, dtype=y.dtype).to(y.device)
        return y + batch_view(sigma, y) * noise, sigma

    def target(self, x: torch.Tensor, t: torch.Tensor, batch: Batch) -> torch.Tensor:
        """eps = (x - y) / sigma, flattened to (B, N); y = batch.y, the clean points x was made from, row for row."""
        if batch.y is None or batch.y.shape != x.shape:
            got = "none" if batch.y is None else f"shape {tuple(batch.y.shape)}"
            raise ValueError(f"the {self.name} target needs batch.y, the clean points x was made from (shape "
                             f"{tuple(x.shape)}), got {got}")
        return ((x - batch.y.to(x.dtype)) / batch_view(t, x)).reshape(x.shape[0], -1)

    def network_input(self, x: torch.Tensor, t: torch.Tensor):
        """(x_k = x / sqrt(1 + sigma^2), ln sigma): DDPM's noisy point and our condition."""
        x_in = x * batch_view(torch.rsqrt(1 + t**2), x)
        return (x_in.reshape(x.shape[0], -1) if len(self.data_shape) == 1 else x_in), torch.log(t)

    def sample_prior(self, n: int, generator: torch.Generator | None = None):
        """x_T ~ N(0, I) in DDPM's coordinates, i.e. x = x_T / sqrt(alpha_bar_T): (n, *shape), t0 = sigma_T (n,)."""
        check_int("n", n)
        x_vp = torch.randn(n, *self.data_shape, generator=generator)
        return x_vp / self.alpha_bars[-1].sqrt().item(), torch.full((n,), self.sigmas[-1].item())

    def velocity(self, prediction: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """dx/d sigma = eps_hat: (B, *shape)."""
        return prediction.reshape(x.shape)

    def exact_predictor(self, data: torch.Tensor) -> Predictor:
        """(x, sigma) -> the best eps for y uniform on `data`: (x - E[y | x, sigma]) / sigma, (B, N), sigma > 0."""
        self.check_data("data", data)
        gaussian = EDM(self.data_shape)

        def predict(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            best = gaussian.ideal_denoiser(x, t, data.to(x.device))
            return ((x - best) / batch_view(t, x)).reshape(x.shape[0], -1)

        return predict

    def to_config(self) -> dict:
        return dict(name=self.name, data_shape=list(self.data_shape), steps=self.steps, beta_start=self.beta_start,
                    beta_end=self.beta_end)
