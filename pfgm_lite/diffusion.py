"""A diffusion baseline on the same networks, trainer and sampler: EDM (Karras et al. 2022), and DDPM's sampler.

EDM, the variance-exploding diffusion model in its "elucidated" form (t = sigma, the noise level):
  perturbation   x = y + sigma n,  n ~ N(0, I),  ln sigma ~ N(P_mean, P_std^2)
  denoiser       D(x, sigma) = c_skip x + c_out F(c_in x, ln sigma)        (EDM's preconditioning, Table 1)
                 c_skip = s_d^2 / (sigma^2 + s_d^2),  c_out = sigma s_d / sqrt(sigma^2 + s_d^2),  c_in = 1 / sqrt(sigma^2 + s_d^2)
  loss           lambda(sigma) ||D - y||^2 with lambda = 1 / c_out^2, i.e. ||F - (y - c_skip x) / c_out||^2: the trainer's
                 1/2 ||net - target||^2 with target (y - c_skip x) / c_out
  sampling       the probability-flow ODE dx/d sigma = (x - D) / sigma, i.e. dx/d ln sigma = x - D, from x ~ N(0, sigma_max^2 I)
                 down to sigma_min on EDM's grid sigma_i = (sigma_max^{1/rho} + i/n (sigma_min^{1/rho} - sigma_max^{1/rho}))^rho
(EDM's own sampler ends with one more Euler step to sigma = 0, which outputs D(x, sigma_min); like PFGM's sampler we stop
at sigma_min = 0.002 and drop nothing.) The network's condition is ln sigma (EDM feeds ln(sigma) / 4 to its embedding;
our Fourier features take the log directly). `ancestral_sample` runs DDPM's 1000-step stochastic sampler (Ho et al. 2020)
on the same denoiser, through the equivalence x_VP = sqrt(alpha_bar) x_VE, sigma^2 = (1 - alpha_bar) / alpha_bar.
"""
from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

from .checks import check_int, check_positive
from .methods import Method, Predictor
from .physics import squared_distances

#: EDM's defaults for images in [-1, 1] (Karras et al. 2022): sigma_data, sigma_min, sigma_max, rho, P_mean, P_std
EDM_IMAGE_DEFAULTS = dict(sigma_data=0.5, sigma_min=0.002, sigma_max=80.0, rho=7.0, p_mean=-1.2, p_std=1.2)


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

    def _view(self, v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return v.view(-1, *[1] * (like.dim() - 1))

    def target(self, x: torch.Tensor, t: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        """(y - c_skip x) / c_out, flattened to (B, N); y = batch[:B], the clean points x was made from (the trainer's
        mini-batch is the start of its large batch)."""
        if batch.shape[0] < x.shape[0]:
            raise ValueError(f"batch must start with the {x.shape[0]} clean points that x was made from, got "
                             f"{batch.shape[0]} points")
        y = batch[: x.shape[0]].to(x.dtype)
        c_skip, c_out, _ = self.preconditioning(t)
        return ((y - self._view(c_skip, x) * x) / self._view(c_out, x)).reshape(x.shape[0], -1)

    def network_input(self, x: torch.Tensor, t: torch.Tensor):
        """(c_in(sigma) x, ln sigma)."""
        _, _, c_in = self.preconditioning(t)
        x_in = x * self._view(c_in, x)
        return (x_in.reshape(x.shape[0], -1) if len(self.data_shape) == 1 else x_in), torch.log(t)

    def denoise(self, prediction: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """D(x, sigma) = c_skip x + c_out F, from the network's F (B, N): (B, *shape)."""
        c_skip, c_out, _ = self.preconditioning(t)
        return self._view(c_skip, x) * x + self._view(c_out, x) * prediction.reshape(x.shape)

    def velocity(self, prediction: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """dx/d ln sigma = x - D(x, sigma): (B, *shape)."""
        return x - self.denoise(prediction, x, t)

    def log_weights(self, d2: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """log of the ideal denoiser's weight of each data point, up to a constant per row: (B, M)."""
        raise NotImplementedError

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
            return ((best - self._view(c_skip, x) * x) / self._view(c_out, x)).reshape(x.shape[0], -1)

        return predict


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
        return y + self._view(sigma, y) * noise, sigma

    def sample_prior(self, n: int, generator: torch.Generator | None = None):
        """x = sigma_max n, n ~ N(0, I): (n, *shape), sigma0 = sigma_max (n,)."""
        check_int("n", n)
        return self.sigma_max * torch.randn(n, *self.data_shape, generator=generator), torch.full((n,), self.sigma_max)

    def log_weights(self, d2: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Gaussian kernel: -||x - y||^2 / (2 sigma^2)."""
        return -d2 / (2 * sigma[:, None] ** 2)

    def to_config(self) -> dict:
        return dict(name=self.name, data_shape=list(self.data_shape), **self._options())


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
