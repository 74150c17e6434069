"""The PFGM training target: the empirical normalized Poisson field of a large batch (Xu et al. 2022, Alg. 1).

E_hat(x~) = sum_i w_i (x~ - y~_i),  w_i = ||x~ - y~_i||^{-(N+1)} / sum_j ||x~ - y~_j||^{-(N+1)}  (softmax in log space)
v(x~)     = -sqrt(N) E_hat / (||E_hat|| + gamma)       points toward the data, norm < sqrt(N)
Since sum_i w_i = 1 and the data sit at z = 0, the z-component of E_hat is exactly z.
"""
from __future__ import annotations

import math

import torch

from .checks import check_positive, check_tensor
from .physics import BLOCK_ELEMENTS, augment, weighted_field


def empirical_field(x: torch.Tensor, z: torch.Tensor, batch: torch.Tensor,
                    block_elements: int = BLOCK_ELEMENTS) -> torch.Tensor:
    """The paper's E_hat: softmax-weighted mean displacement from a batch of data charges.

    x:       (B, N) positions (flattened), z: (B,) heights > 0
    batch:   (L, N) data points on the plane (the large batch B_L)
    returns: (B, N+1)  E_hat = sum_i w_i (x~ - y~_i), weights w_i ∝ ||x~ - y~_i||^{-(N+1)}
    """
    check_tensor("x", x, ndim=2)
    check_tensor("batch", batch, ndim=2, last_dim=x.shape[1])
    check_tensor("z", z, ndim=1)
    if z.shape[0] != x.shape[0]:
        raise ValueError(f"z must have shape ({x.shape[0]},) to match x, got {tuple(z.shape)}")
    e_hat, _ = weighted_field(augment(x, z), augment(batch.to(x.dtype), 0.0), block_elements=block_elements)
    return e_hat


def data_scaled_gamma(x: torch.Tensor, z: torch.Tensor, mean_norm: float) -> torch.Tensor:
    """gamma(x~) = (n_bar / 8) sqrt(1 + (||x||^2 + z^2) / n_bar^2): gamma in data units, growing with distance.

    x: (B, N), z: (B,) -> (B,). This repository's choice, not the paper's (which uses a constant gamma = 5, i.e.
    n_bar / 6 at the official script's n_bar = 30 for CIFAR-10).
    """
    mean_norm = check_positive("mean_norm", mean_norm)
    r2 = (x**2).sum(-1) + z**2
    return (mean_norm / 8) * torch.sqrt(1 + r2 / mean_norm**2)


def normalize_field(e_hat: torch.Tensor, gamma: torch.Tensor | float) -> torch.Tensor:
    """The regression target v = -sqrt(N) E_hat / (||E_hat|| + gamma).

    e_hat: (B, N+1); gamma: float or (B,); returns (B, N+1)
    """
    n = e_hat.shape[-1] - 1
    gamma = torch.as_tensor(gamma, dtype=e_hat.dtype, device=e_hat.device)
    if (gamma < 0).any():
        raise ValueError(f"gamma must be >= 0, got min {gamma.min().item():.4g}")
    denom = e_hat.norm(dim=-1) + gamma
    return -math.sqrt(n) * e_hat / denom[..., None]


def log_z_velocity_from_normalized(v_x: torch.Tensor, z: torch.Tensor, gamma: torch.Tensor | float,
                                   max_ratio: float = 0.999) -> torch.Tensor:
    """Recover dx/d(log z) = z E_x / E_z = E_hat_x from the x-part of a normalized field, using E_hat_z = z.

    v_x: (B, N) x-part of v, z: (B,), gamma: float or (B,)
    With n = ||v_x|| / sqrt(N) and a = ||E_hat_x||:  n (sqrt(a^2 + z^2) + gamma) = a, whose root is
        a = n (gamma + sqrt(n^2 gamma^2 + (1 - n^2) z^2)) / (1 - n^2);
    then E_hat_x = -a v_x / ||v_x||.  n is clipped to max_ratio (the inversion blows up as n -> 1).
    """
    n_dims = v_x.shape[-1]
    gamma = torch.as_tensor(gamma, dtype=v_x.dtype, device=v_x.device)
    norm = v_x.norm(dim=-1)
    n = (norm / math.sqrt(n_dims)).clamp(max=max_ratio)
    a = n * (gamma + torch.sqrt((n * gamma) ** 2 + (1 - n**2) * z**2)) / (1 - n**2)
    return -(a / norm.clamp_min(1e-30))[:, None] * v_x
