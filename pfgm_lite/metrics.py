"""Distances between sample sets, and the noise floor that says what "good" means.

sliced Wasserstein: SW_1(P, Q) = E_theta W_1(theta.P, theta.Q), averaged over random unit directions theta,
each 1D W_1 computed exactly from sorted projections (equal sample sizes).
MMD^2 with an RBF kernel k(a, b) = exp(-||a - b||^2 / (2 h^2)), h from the median heuristic (unbiased estimate).
The noise floor is the same distance between two independent draws of the true distribution of the same size.
"""
from __future__ import annotations

from typing import Callable

import torch

from .checks import check_int, check_tensor


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    check_tensor("a", a, ndim=2)
    check_tensor("b", b, ndim=2, last_dim=a.shape[1])
    return a.double(), b.double()


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, n_projections: int = 500,
                       generator: torch.Generator | None = None) -> float:
    """Sliced 1-Wasserstein distance between two equal-size sample sets a, b: (n, d) -> float."""
    a, b = _check_pair(a, b)
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"a and b must have the same number of samples, got {a.shape[0]} and {b.shape[0]}")
    check_int("n_projections", n_projections)
    theta = torch.randn(a.shape[1], n_projections, generator=generator, dtype=torch.float64)
    theta = theta / theta.norm(dim=0, keepdim=True)
    pa, _ = torch.sort(a @ theta, dim=0)
    pb, _ = torch.sort(b @ theta, dim=0)
    return (pa - pb).abs().mean().item()


def mmd_rbf(a: torch.Tensor, b: torch.Tensor, bandwidth: float | None = None) -> float:
    """Unbiased MMD^2 with an RBF kernel; bandwidth h defaults to the median pairwise distance of a and b."""
    a, b = _check_pair(a, b)
    both = torch.cat([a, b])
    d2 = torch.cdist(both, both) ** 2
    if bandwidth is None:
        off = d2[~torch.eye(len(both), dtype=torch.bool)]
        bandwidth = off.sqrt().median().item()
    k = torch.exp(-d2 / (2 * bandwidth**2))
    n, m = a.shape[0], b.shape[0]
    kaa = (k[:n, :n].sum() - n) / (n * (n - 1))
    kbb = (k[n:, n:].sum() - m) / (m * (m - 1))
    kab = k[:n, n:].mean()
    return (kaa + kbb - 2 * kab).item()


def noise_floor(metric: Callable[[torch.Tensor, torch.Tensor], float], sample_true: Callable[[int], torch.Tensor],
                n: int, repeats: int = 3) -> float:
    """Mean of metric(true draw, independent true draw) over `repeats` pairs of size n."""
    check_int("n", n)
    check_int("repeats", repeats)
    return sum(metric(sample_true(n), sample_true(n)) for _ in range(repeats)) / repeats


def nearest_mode_rms(x: torch.Tensor, modes: torch.Tensor) -> float:
    """Root-mean-square distance from each sample to its nearest mode centre: (n, d), (k, d) -> float."""
    check_tensor("x", x, ndim=2)
    check_tensor("modes", modes, ndim=2, last_dim=x.shape[1])
    return torch.cdist(x.double(), modes.double()).min(dim=1).values.pow(2).mean().sqrt().item()
