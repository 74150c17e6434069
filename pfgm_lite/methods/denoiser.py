"""What EDM and PFGM++ share: EDM's preconditioning (Karras et al. 2022), the denoising target and the ODE in ln sigma.

  denoiser  D(x, sigma) = c_skip x + c_out F(c_in x, ln sigma)        (EDM's preconditioning, Table 1)
            c_skip = s_d^2 / (sigma^2 + s_d^2),  c_out = sigma s_d / sqrt(sigma^2 + s_d^2),  c_in = 1 / sqrt(sigma^2 + s_d^2)
  loss      lambda(sigma) ||D - y||^2 with lambda = 1 / c_out^2, i.e. ||F - (y - c_skip x) / c_out||^2: the trainer's
            1/2 ||net - target||^2 with target (y - c_skip x) / c_out
  ODE       dx/d ln sigma = x - D(x, sigma)
"""
from __future__ import annotations

import abc
import math

import torch

from ..checks import batch_view, check_positive
from ..physics import squared_distances
from .base import Batch, Method, Predictor


class Denoiser(Method):
    """What EDM and PFGM++ share: EDM's preconditioning, the denoising target and the ODE dx/d ln sigma = x - D.

    Subclasses draw the perturbation (perturb), the prior (sample_prior) and the ideal denoiser's weights.
    t is sigma throughout; the network's output F has N numbers (extra_outputs = 0).
    """

    extra_outputs = 0

    def __init__(self, data_shape: tuple[int, ...], sigma_data: float = 0.5, sigma_min: float = 0.002,
                 sigma_max: float = 80.0, rho: float = 7.0, p_mean: float = -1.2, p_std: float = 1.2):
        super().__init__(data_shape)
        self.sigma_data = check_positive("sigma_data", sigma_data)
        self.sigma_min = check_positive("sigma_min", sigma_min)
        self.sigma_max = check_positive("sigma_max", sigma_max)
        if self.sigma_min >= self.sigma_max:
            raise ValueError(f"sigma_min must be smaller than sigma_max, got {sigma_min} and {sigma_max}")
        self.rho = check_positive("rho", rho)
        self.p_mean = float(p_mean)
        if not math.isfinite(self.p_mean):
            raise ValueError(f"p_mean must be finite, got {p_mean}")
        self.p_std = check_positive("p_std", p_std)
        self.t_min = self.sigma_min

    def _options(self) -> dict:
        return dict(sigma_data=self.sigma_data, sigma_min=self.sigma_min, sigma_max=self.sigma_max, rho=self.rho,
                    p_mean=self.p_mean, p_std=self.p_std)

    def draw_sigma(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Training noise levels: ln sigma ~ N(P_mean, P_std^2), (n,)."""
        return torch.exp(self.p_mean + self.p_std * torch.randn(n, generator=generator))

    def preconditioning(self, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """EDM's c_skip, c_out, c_in at the noise levels sigma (B,): three (B,) tensors."""
        s2, d2 = sigma**2, self.sigma_data**2
        return d2 / (s2 + d2), sigma * self.sigma_data / torch.sqrt(s2 + d2), torch.rsqrt(s2 + d2)

    def target(self, x: torch.Tensor, t: torch.Tensor, batch: Batch) -> torch.Tensor:
        """(y - c_skip x) / c_out, flattened to (B, N); y = batch.y, the clean points x was made from, row for row."""
        if batch.y is None or batch.y.shape != x.shape:
            got = "none" if batch.y is None else f"shape {tuple(batch.y.shape)}"
            raise ValueError(f"the {self.name} target needs batch.y, the clean points x was made from (shape "
                             f"{tuple(x.shape)}), got {got}")
        y = batch.y.to(x.dtype)
        c_skip, c_out, _ = self.preconditioning(t)
        return ((y - batch_view(c_skip, x) * x) / batch_view(c_out, x)).reshape(x.shape[0], -1)

    def network_input(self, x: torch.Tensor, t: torch.Tensor):
        """(c_in(sigma) x, ln sigma)."""
        _, _, c_in = self.preconditioning(t)
        x_in = x * batch_view(c_in, x)
        return (x_in.reshape(x.shape[0], -1) if len(self.data_shape) == 1 else x_in), torch.log(t)

    def denoise(self, prediction: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """D(x, sigma) = c_skip x + c_out F, from the network's F (B, N): (B, *shape)."""
        c_skip, c_out, _ = self.preconditioning(t)
        return batch_view(c_skip, x) * x + batch_view(c_out, x) * prediction.reshape(x.shape)

    def velocity(self, prediction: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """dx/d ln sigma = x - D(x, sigma): (B, *shape)."""
        return x - self.denoise(prediction, x, t)

    @abc.abstractmethod
    def log_weights(self, d2: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """log of the ideal denoiser's weight of each data point, up to a constant per row: (B, M)."""

    def ideal_denoiser(self, x: torch.Tensor, t: torch.Tensor, data: torch.Tensor,
                       block_elements: int = 2**22) -> torch.Tensor:
        """E[y | x, sigma] for y uniform on `data` (M, *shape): the best possible denoiser, (B, *shape).

        A softmax over log_weights in blocks of points; the weighted mean is accumulated in float64 (see
        physics.weighted_field: near a data point x - D is a small difference of large numbers).
        """
        self.check_data("data", data)
        xf, yf = x.reshape(x.shape[0], -1), data.reshape(data.shape[0], -1).to(x.dtype)
        y64 = yf.double()
        out = []
        step = max(1, block_elements // max(1, yf.shape[0]))
        for xb, tb in zip(xf.split(step), t.split(step)):
            w = torch.softmax(self.log_weights(squared_distances(xb, yf), tb), dim=1)
            out.append((w.double() @ y64).to(x.dtype))
        return torch.cat(out).reshape(x.shape)

    def exact_predictor(self, data: torch.Tensor) -> Predictor:
        """(x, sigma) -> the F of the ideal denoiser of `data`: (D* - c_skip x) / c_out, (B, N)."""
        self.check_data("data", data)

        def predict(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            c_skip, c_out, _ = self.preconditioning(t)
            best = self.ideal_denoiser(x, t, data.to(x.device))
            return ((best - batch_view(c_skip, x) * x) / batch_view(c_out, x)).reshape(x.shape[0], -1)

        return predict
