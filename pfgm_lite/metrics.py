"""Distances between sample sets, and the noise floor that says what "good" means.

sliced Wasserstein: SW_1(P, Q) = E_theta W_1(theta.P, theta.Q), averaged over random unit directions theta,
each 1D W_1 computed exactly from sorted projections (equal sample sizes).
MMD^2 with an RBF kernel k(a, b) = exp(-||a - b||^2 / (2 h^2)), h from the median heuristic (unbiased estimate).
energy distance: sqrt(2 E||X - Y|| - E||X - X'|| - E||Y - Y'||) over the two empirical distributions (Szekely & Rizzo;
scipy.stats.energy_distance in 1D), a second distance beside SW that sees every direction at once.
The noise floor is the same distance between two independent draws of the true distribution of the same size.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from scipy import linalg

from .checks import check_int, check_tensor


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    check_tensor("a", a, ndim=2)
    check_tensor("b", b, ndim=2, last_dim=a.shape[1])
    return a.double(), b.double()


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, n_projections: int = 500,
                       generator: torch.Generator | None = None, block_elements: int = 1 << 20) -> float:
    """Sliced 1-Wasserstein distance between two equal-size sample sets a, b: (n, d) -> float.

    The projections are sorted a group at a time, about block_elements projected values per group (5000 points and
    500 directions: 3 groups, ~50 MB at a time instead of ~200 MB); the directions do not depend on the grouping.
    """
    a, b = _check_pair(a, b)
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"a and b must have the same number of samples, got {a.shape[0]} and {b.shape[0]}")
    check_int("n_projections", n_projections)
    check_int("block_elements", block_elements)
    theta = torch.randn(a.shape[1], n_projections, generator=generator, dtype=torch.float64)
    theta = theta / theta.norm(dim=0, keepdim=True)
    group = max(1, block_elements // a.shape[0])
    total = torch.zeros((), dtype=torch.float64)
    for start in range(0, n_projections, group):
        directions = theta[:, start:start + group]
        pa, _ = torch.sort(a @ directions, dim=0)
        pb, _ = torch.sort(b @ directions, dim=0)
        total += (pa - pb).abs().sum()
    return (total / (a.shape[0] * n_projections)).item()


def _upper_distances(x: torch.Tensor, block: int):
    """The distances ||x_i - x_j||, i < j, of x (T, d), one block of `block` rows i at a time: 1-D tensors."""
    for start in range(0, len(x) - 1, block):                 # the last row has no j > i
        d = torch.cdist(x[start:start + block], x[start:])
        yield d[torch.ones_like(d, dtype=torch.bool).triu(1)]


def median_pairwise_distance(x: torch.Tensor, block: int = 1024, keep: int = 1_000_000) -> float:
    """torch.median of the T (T - 1) / 2 distances ||x_i - x_j||, i < j, of x (T, d), without storing them all.

    The median is the k-th smallest distance, k = (P - 1) // 2 (torch.median's lower middle value). Each pass over
    the blocks counts the distances in 1024 bins between two bounds and narrows the bounds to the bin holding the
    k-th; once at most `keep` distances lie between the bounds they are kept and the k-th is picked exactly.
    Memory: O(block T + keep) instead of O(T^2) (2000 + 2000 points: ~40 MB instead of ~0.2 GB).
    """
    check_tensor("x", x, ndim=2)
    check_int("block", block)
    check_int("keep", keep)
    if len(x) < 2:
        raise ValueError(f"x needs at least 2 points for a pairwise distance, got {len(x)}")
    k = (len(x) * (len(x) - 1) // 2 - 1) // 2            # 0-based rank of the median among the P distances
    low, high = 0.0, max(part.max().item() for part in _upper_distances(x, block))
    high_inclusive = True                                  # the current range is [low, high] or [low, high)
    for _ in range(64):
        inside = [part[(part >= low) & ((part <= high) if high_inclusive else (part < high))]
                  for part in _upper_distances(x, block)]
        count = sum(len(part) for part in inside)
        if count <= keep or all(len(p) == 0 or (p == low).all() for p in inside):   # few left, or all tied at low
            return torch.cat(inside).kthvalue(k + 1).values.item()
        edges = torch.linspace(low, high, 1025, dtype=torch.float64)
        counts = sum(torch.bincount((torch.bucketize(part, edges, right=True) - 1).clamp(0, 1023), minlength=1024)
                     for part in inside)
        below = torch.cumsum(counts, 0)
        b = int(torch.searchsorted(below, torch.tensor(k + 1, dtype=below.dtype)))   # the bin holding the k-th
        k -= int(below[b - 1]) if b > 0 else 0
        low, high, high_inclusive = edges[b].item(), edges[b + 1].item(), b == 1023 and high_inclusive
        del inside
    raise RuntimeError("median_pairwise_distance did not converge")  # pragma: no cover - 64 halvings of 1024 bins


def mmd_rbf(a: torch.Tensor, b: torch.Tensor, bandwidth: float | None = None, block: int = 256) -> float:
    """Unbiased MMD^2 with an RBF kernel; bandwidth h defaults to the median pairwise distance of a and b.

    a: (n, d), b: (m, d) -> MMD^2 = mean_{i != j} k(a_i, a_j) + mean_{i != j} k(b_i, b_j) - 2 mean k(a_i, b_j),
    k(x, y) = exp(-||x - y||^2 / (2 h^2)). Computed over blocks of `block` rows, so memory grows as block (n + m)
    rather than (n + m)^2 (2000 + 2000 points: float64 temporaries of 8 MB instead of 128 MB).
    """
    a, b = _check_pair(a, b)
    check_int("block", block)
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise ValueError(f"mmd_rbf's unbiased estimate averages over pairs i != j of each set: a and b need at least "
                         f"2 samples each, got {a.shape[0]} and {b.shape[0]}")
    both = torch.cat([a, b])
    total, n, m = len(both), a.shape[0], b.shape[0]
    if bandwidth is None:
        # the median over pairs i < j equals the median over all ordered pairs i != j (each distance appears twice)
        bandwidth = median_pairwise_distance(both, block)
    sums = torch.zeros(3, dtype=torch.float64)            # sum of k over a-a, b-b and a-b pairs (diagonals included)
    for start in range(0, total, block):
        k = torch.exp(-torch.cdist(both[start:start + block], both) ** 2 / (2 * bandwidth**2)).double()
        rows_a = max(0, min(n, start + block) - start)      # the first rows_a rows of this block belong to a
        sums[0] += k[:rows_a, :n].sum()
        sums[1] += k[rows_a:, n:].sum()
        sums[2] += k[:rows_a, n:].sum()
    kaa = (sums[0] - n) / (n * (n - 1))
    kbb = (sums[1] - m) / (m * (m - 1))
    kab = sums[2] / (n * m)
    return (kaa + kbb - 2 * kab).item()


def energy_distance(a: torch.Tensor, b: torch.Tensor, block: int = 1024) -> float:
    """Energy distance between the empirical distributions of a (n, d) and b (m, d) -> float.

    sqrt(2 mean ||a_i - b_j|| - mean ||a_i - a_j|| - mean ||b_i - b_j||), the means over all pairs (i = j included,
    the V-statistic, as scipy.stats.energy_distance computes it in 1D); in float64, `block` rows at a time.
    """
    a, b = _check_pair(a, b)
    check_int("block", block)

    def mean_distance(x: torch.Tensor, y: torch.Tensor) -> float:
        total = sum(torch.cdist(x[k:k + block], y).sum().item() for k in range(0, len(x), block))
        return total / (len(x) * len(y))

    squared = 2 * mean_distance(a, b) - mean_distance(a, a) - mean_distance(b, b)
    return max(squared, 0.0) ** 0.5


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


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (the FID formula):
    ||mu_a - mu_b||^2 + tr(C_a + C_b - 2 (C_a C_b)^{1/2}).   a: (n, d), b: (m, d)."""

    a, b = _check_pair(a, b)
    mu_a, mu_b = a.mean(0).numpy(), b.mean(0).numpy()
    eps = 1e-6 * np.eye(a.shape[1])   # keeps sqrtm defined when a feature set is degenerate (e.g. noise)
    cov_a, cov_b = np.cov(a.numpy(), rowvar=False) + eps, np.cov(b.numpy(), rowvar=False) + eps
    root = np.real(linalg.sqrtm(cov_a @ cov_b))
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


#: where the digits code that lived here went (pfgm_lite.digits, and the split in pfgm_lite.data)
_MOVED = {"DigitClassifier": "digits", "digit_split": "data", "train_digit_classifier": "digits",
          "classifier_path": "digits", "digit_classifier": "digits", "classifier_accuracy": "digits",
          "digit_sample_quality": "digits"}


def __getattr__(name: str):
    if name in _MOVED:
        raise AttributeError(f"pfgm_lite.metrics.{name} moved to pfgm_lite.{_MOVED[name]}.{name}: "
                             f"from pfgm_lite import {_MOVED[name]}")
    raise AttributeError(f"module 'pfgm_lite.metrics' has no attribute {name!r}")
