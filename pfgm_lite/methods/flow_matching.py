"""Flow matching with the linear interpolant (conditional flow matching, Lipman et al. 2023; rectified flow, Liu et al.
2023) as a Method: straight lines from the data to Gaussian noise, and the velocity field that transports along them.

  path        x_t = (1 - t) y + t n,  n ~ N(0, I),  t ~ U[0, 1]        (t = 0 the data, t = 1 the noise)
  target      dx_t/dt = n - y = (x_t - y) / t                         (the conditional velocity)
  marginal    v(x, t) = E[n - y | x_t = x] = (x - E[y | x_t = x]) / t (what the regression learns)
  sampling    dx/dt = v from x ~ N(0, I) at t = 1 down to t = 0        (time "linear": the sampler's dx/dt)
Here t runs from the noise (1) to the data (0), like z in PFGM and sigma in EDM, so the one sampler integrates every
method downwards; papers that put the data at t = 1 describe the same flow with t -> 1 - t. The training t is kept
>= T_FLOOR so the target (x_t - y) / t keeps float32's precision (ours). The network's condition is 8 t - 4, which
spreads t over the range our Fourier features see (ours; PFGM and EDM feed log z and ln sigma there).
"""
from __future__ import annotations

import torch

from ..checks import batch_view, check_int, check_positive
from .base import Batch, Method, Predictor

#: the smallest training time: the target (x - y) / t of a float32 x has error ~ eps32 ||y|| / t (1e-3 at t = 1e-4)
T_FLOOR = 1e-4


class FlowMatching(Method):
    """Flow matching / rectified flow with the linear interpolant and a N(0, sigma_prior^2 I) source; see the module
    doc. The network predicts the velocity (N numbers, extra_outputs = 0)."""

    name = "flow_matching"
    time = "linear"
    t_min = 0.0

    def __init__(self, data_shape: tuple[int, ...], sigma_prior: float = 1.0):
        super().__init__(data_shape)
        self.sigma_prior = check_positive("sigma_prior", sigma_prior)

    def perturb(self, y: torch.Tensor, generator: torch.Generator | None = None):
        """x_t = (1 - t) y + t n with t ~ U[T_FLOOR, 1], n ~ N(0, sigma_prior^2 I): x (B, *shape), t (B,)."""
        self.check_data("y", y)
        t = (T_FLOOR + (1 - T_FLOOR) * torch.rand(y.shape[0], generator=generator, dtype=y.dtype)).to(y.device)
        noise = self.sigma_prior * torch.randn(y.shape, generator=generator, dtype=y.dtype).to(y.device)
        return (1 - batch_view(t, y)) * y + batch_view(t, y) * noise, t

    def target(self, x: torch.Tensor, t: torch.Tensor, batch: Batch) -> torch.Tensor:
        """n - y = (x - y) / t, flattened to (B, N); y = batch.y, the clean points x was made from, row for row."""
        if batch.y is None or batch.y.shape != x.shape:
            got = "none" if batch.y is None else f"shape {tuple(batch.y.shape)}"
            raise ValueError(f"the {self.name} target needs batch.y, the clean points x was made from (shape "
                             f"{tuple(x.shape)}), got {got}")
        return ((x - batch.y.to(x.dtype)) / batch_view(t, x)).reshape(x.shape[0], -1)

    def network_input(self, x: torch.Tensor, t: torch.Tensor):
        """(x, 8 t - 4)."""
        return (x.reshape(x.shape[0], -1) if len(self.data_shape) == 1 else x), 8 * t - 4

    def sample_prior(self, n: int, generator: torch.Generator | None = None):
        """x ~ N(0, sigma_prior^2 I): (n, *shape), t0 = 1 (n,)."""
        check_int("n", n)
        return self.sigma_prior * torch.randn(n, *self.data_shape, generator=generator), torch.ones(n)

    def velocity(self, prediction: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """dx/dt = the predicted velocity: (B, *shape)."""
        return prediction.reshape(x.shape)

    def posterior_mean(self, x: torch.Tensor, t: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
        """E[y | x_t = x] for y uniform on `data` (M, *shape): (B, *shape).

        The weights are a softmax over -||x - a y_i||^2 / (2 sigma^2 t^2), a = 1 - t; the term ||x||^2, the same for
        every i, is left out, so log w_i = (2 a x.y_i - a^2 ||y_i||^2) / (2 sigma^2 t^2), computed in float64.
        """
        xf, yf = x.reshape(x.shape[0], -1).double(), data.reshape(data.shape[0], -1).double()
        a, var = (1 - t).double()[:, None], (self.sigma_prior * t).double()[:, None] ** 2
        log_w = (2 * a * (xf @ yf.T) - a**2 * (yf**2).sum(1)[None, :]) / (2 * var)
        return (torch.softmax(log_w, dim=1) @ yf).to(x.dtype).reshape(x.shape)

    def exact_predictor(self, data: torch.Tensor) -> Predictor:
        """(x, t) -> the marginal velocity of the empirical data set, (x - E[y | x_t = x]) / t (t >= 1e-6): (B, N)."""
        self.check_data("data", data)

        def predict(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            t = t.clamp_min(1e-6)
            best = self.posterior_mean(x, t, data.to(x.device))
            return ((x - best) / batch_view(t, x)).reshape(x.shape[0], -1)

        return predict

    def to_config(self) -> dict:
        return dict(name=self.name, data_shape=list(self.data_shape), sigma_prior=self.sigma_prior)
