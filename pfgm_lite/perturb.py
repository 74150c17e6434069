"""The PFGM perturbation kernel and the data-driven hyper-parameter rule (Xu et al. 2022, Alg. 2, App. B.1.1).

Training points are data points pushed up into R^{N+1}:  m ~ U[0, M],  eps = (eps_x, eps_z) ~ N(0, sigma^2 I),
    x = y + eps_x (1 + tau)^m,   z = |eps_z| (1 + tau)^m,
so the perturbation grows geometrically with m, from sigma (next to the data) to sigma (1+tau)^M (the prior).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import torch

from .checks import check_int, check_positive, check_tensor


@dataclass(frozen=True)
class PFGMHyperparameters:
    """PFGM's hyper-parameters (paper symbols): N data dims, sigma, tau, M, z_max, upper_norm, and the
    mean data norm n_bar they were derived from. z_min is where sampling stops. max_norm, the largest data
    norm (None when only n_bar is known), bounds our sampler's velocity (methods.PFGM.velocity)."""

    N: int
    sigma: float
    tau: float
    M: int
    z_max: float
    upper_norm: float
    mean_norm: float
    z_min: float = 1e-3
    max_norm: float | None = None

    def to_dict(self) -> dict:
        """Plain dict (for checkpoints and printing)."""
        return asdict(self)


def hyperparameter_rule(N: int, mean_norm: float, sigma: float = 0.01, tau: float = 0.03,
                        z_min: float = 1e-3) -> PFGMHyperparameters:
    """M, z_max and upper_norm from the data dimension and mean data norm (the official hyper-parameters.py).

    M          = floor(0.75 ln(n_bar^2 / (2 sqrt(N) sigma^2)) / ln(1 + tau)) + 1
    z_max      = sqrt(2/pi) sigma (1 + tau)^M      (= E|eps_z| at m = M)
    upper_norm = sqrt(N) sigma (1 + tau)^M         (~ E||eps_x|| at m = M)
    CIFAR-10 (N = 3072, n_bar = 30) gives M = 287, z_max = 38.6, upper_norm = 2679 (shipped: 291 / 40 / 3000).
    """
    check_int("N", N)
    mean_norm = check_positive("mean_norm", mean_norm)
    sigma = check_positive("sigma", sigma)
    tau = check_positive("tau", tau)
    ratio = mean_norm**2 / (2 * math.sqrt(N) * sigma**2)
    if ratio <= 1:
        raise ValueError(f"mean_norm = {mean_norm} is too small for sigma = {sigma} and N = {N}: "
                         f"need mean_norm^2 > 2 sqrt(N) sigma^2 = {2 * math.sqrt(N) * sigma**2:.3g}")
    M = math.floor(0.75 * math.log(ratio) / math.log1p(tau)) + 1
    scale = sigma * (1 + tau) ** M
    return PFGMHyperparameters(N=N, sigma=sigma, tau=tau, M=M, z_max=math.sqrt(2 / math.pi) * scale,
                               upper_norm=math.sqrt(N) * scale, mean_norm=mean_norm, z_min=z_min)


def mean_data_norm(data: torch.Tensor) -> float:
    """Average Euclidean norm of the (flattened) data points: n_bar.  data: (B, *shape) -> float."""
    check_tensor("data", data, finite=True)
    if data.dim() < 2 or data.shape[0] == 0:
        raise ValueError(f"data must have shape (B, ...) with B >= 1, got {tuple(data.shape)}")
    return data.reshape(data.shape[0], -1).norm(dim=1).mean().item()


def hyperparameters_for(data: torch.Tensor, sigma: float = 0.01, tau: float = 0.03) -> PFGMHyperparameters:
    """Apply hyperparameter_rule to a dataset: N = numel per sample, n_bar = mean data norm; also records
    max_norm = the largest data norm."""
    n_dims = int(math.prod(data.shape[1:]))
    hp = hyperparameter_rule(n_dims, mean_data_norm(data), sigma=sigma, tau=tau)
    return replace(hp, max_norm=data.reshape(data.shape[0], -1).norm(dim=1).max().item())


def band_exponents(hp: PFGMHyperparameters, low: float = 0.1, high: float = 3.0) -> tuple[float, float]:
    """The exponents (m_low, m_high) where the noise per dimension, sigma (1+tau)^m, is `low` and `high` times
    the data's scale per dimension n_bar / sqrt(N); clipped to [0, M].

    m = ln(c n_bar / (sqrt(N) sigma)) / ln(1 + tau) for c = low, high.  Digits: noise 0.1 to 2.9 per pixel, m = 77 to 191.
    """
    low, high = check_positive("low", low), check_positive("high", high)
    if low >= high:
        raise ValueError(f"low must be smaller than high, got low = {low}, high = {high}")
    scale = hp.mean_norm / math.sqrt(hp.N)

    def exponent(c: float) -> float:
        return min(max(math.log(c * scale / hp.sigma) / math.log1p(hp.tau), 0.0), float(hp.M))

    return exponent(low), exponent(high)


def perturb(y: torch.Tensor, M: int, sigma: float, tau: float, restrict_M: bool = False,
            generator: torch.Generator | None = None, band: tuple[float, float] | None = None,
            emphasis: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Perturb data into the upper half-space with the PFGM kernel.

    y:        (B, *shape) data on the plane z = 0
    returns:  x (B, *shape) perturbed positions, z (B,) heights > 0, m (B,) the drawn exponents
    x = y + eps_x (1+tau)^m, z = |eps_z| (1+tau)^m, m ~ U[0, M]; with restrict_M, samples whose
    |eps_z| < 0.005 get m ~ U[0, 0.7 M] instead (official code; it confines the norms, App. B.1.1).
    emphasis: the fraction of samples whose m is drawn from U[band] instead (band = (m_low, m_high), e.g. from
    band_exponents): more training where the network needs it; the field it should learn does not change.
    """
    check_tensor("y", y)
    if y.dim() < 2:
        raise ValueError(f"y must have shape (B, ...) with a batch dimension, got {tuple(y.shape)}")
    check_int("M", M)
    sigma = check_positive("sigma", sigma)
    tau = check_positive("tau", tau)
    if not 0 <= emphasis <= 1:
        raise ValueError(f"emphasis must be in [0, 1], got {emphasis}")
    if emphasis > 0:
        if band is None or len(band) != 2 or not 0 <= band[0] < band[1] <= M:
            raise ValueError(f"band must be (m_low, m_high) with 0 <= m_low < m_high <= M = {M} when emphasis > 0, "
                             f"got {band}")
    b = y.shape[0]
    opts = dict(generator=generator, dtype=y.dtype)
    m = torch.rand(b, **opts) * M
    eps_x = sigma * torch.randn(y.shape, **opts)
    eps_z = sigma * torch.randn(b, **opts)
    if restrict_M:
        small = eps_z.abs() < 0.005
        m = torch.where(small, torch.rand(b, **opts) * 0.7 * M, m)
    if emphasis > 0:
        in_band = torch.rand(b, **opts) < emphasis
        m = torch.where(in_band, band[0] + torch.rand(b, **opts) * (band[1] - band[0]), m)
    scale = (1 + tau) ** m
    x = y + (eps_x * scale.view(-1, *[1] * (y.dim() - 1))).to(y.device)
    z = (eps_z.abs() * scale).clamp_min(1e-10).to(y.device)
    return x, z, m.to(y.device)
