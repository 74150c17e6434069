"""Facts about pfgm_lite/metrics.py: sliced Wasserstein, MMD, the noise floor and the mode distance."""
from __future__ import annotations

import math

import pytest
import torch

from pfgm_lite.data import eight_gaussian_modes, eight_gaussians, sample_toy
from pfgm_lite.metrics import median_pairwise_distance, mmd_rbf, nearest_mode_rms, noise_floor, sliced_wasserstein


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_sliced_wasserstein_of_identical_sets_is_zero():
    a = sample_toy("moons", 500, gen(1))
    # float64 projections a . theta (|theta| = 1) of the same point can differ by ~D eps64 ||a|| when a matrix
    # kernel handles its rows in another order; sorting moves no value by more than that
    tol = 2 * a.shape[1] * torch.finfo(torch.float64).eps * a.norm(dim=1).max().item()
    assert sliced_wasserstein(a, a.clone(), generator=gen(2)) <= tol
    # a permutation of the same points too: W_1 compares sorted projections
    assert sliced_wasserstein(a, a[torch.randperm(500, generator=gen(3))], generator=gen(2)) <= tol
    # while moving a single point by 1e-4 is seen: ~1e-4 |cos| / 500 = 1.3e-7, far above tol = 1.4e-15
    moved = a.clone()
    moved[0, 0] += 1e-4
    assert sliced_wasserstein(a, moved, generator=gen(2)) > 1e3 * tol


def test_sliced_wasserstein_in_groups_of_projections_is_the_same_number():
    # the same 500 directions sorted 7, 64 or all 500 at a time: float64 sums in another order (~1e-16 relative)
    a, b = sample_toy("moons", 400, gen(7)), sample_toy("moons", 400, gen(8)) + 0.1
    whole = sliced_wasserstein(a, b, generator=gen(9), block_elements=10**9)
    for block in (400 * 7, 400 * 64, 1):
        assert sliced_wasserstein(a, b, generator=gen(9), block_elements=block) == pytest.approx(whole, rel=1e-12)
    # other directions give another estimate: the comparison above would see a grouping that drew its own
    assert sliced_wasserstein(a, b, generator=gen(10)) != pytest.approx(whole, rel=1e-6)


def test_sliced_wasserstein_of_a_shift():
    # translating a set by s moves every 1D projection by s.theta, so SW = |s| E|cos| = |s| 2/pi in 2D
    a = sample_toy("moons", 500, gen(1))
    values = []
    for shift in (0.25, 0.5, 1.0, 2.0):
        sw = sliced_wasserstein(a, a + torch.tensor([shift, 0.0]), n_projections=4000, generator=gen(4))
        assert sw == pytest.approx(shift * 2 / math.pi, rel=0.03)   # 4000 random directions: ~4 standard errors
        values.append(sw)
    assert values == sorted(values)


def test_mmd_separates_distributions():
    a, b = sample_toy("moons", 400, gen(1)), sample_toy("moons", 400, gen(2))
    same = mmd_rbf(a, b)
    shifted = [mmd_rbf(a, b + torch.tensor([shift, 0.0])) for shift in (0.25, 0.5, 1.0)]
    assert abs(same) < 0.1 * shifted[1]  # measured: 0.0013 against 0.054 at a shift of 0.5
    assert shifted == sorted(shifted)
    # identical sets: the unbiased estimate drops k(a_i, a_i) = 1 from the within-set terms only, so it is < 0
    assert mmd_rbf(a, a.clone()) < 0
    # a huge bandwidth makes every kernel value ~1, so MMD^2 -> 0 (~ shift^2 / h^2 = 1e-8, in float64)
    assert abs(mmd_rbf(a, b + 1.0, bandwidth=1e4)) < 1e-6


def _median_of_all_pairs(x):
    d = torch.cdist(x, x)
    return d[torch.ones_like(d, dtype=torch.bool).triu(1)].median().item()


@pytest.mark.parametrize("n", [2, 3, 7, 300, 1001])
@pytest.mark.parametrize("block, keep", [(1024, 1_000_000), (13, 5), (1, 1)])
def test_median_pairwise_distance_is_torch_median_of_all_pairs(n, block, keep):
    # the same distances, picked by rank: exactly equal to torch.median of the stored pairs, however few are kept
    x = sample_toy("moons", n, gen(n)).double()
    assert median_pairwise_distance(x, block=block, keep=keep) == _median_of_all_pairs(x)


def test_median_pairwise_distance_with_ties_and_a_wrong_rank_fails():
    x = torch.randn(50, 3, generator=gen(1), dtype=torch.float64).round()
    x = torch.cat([x, x, x])                                 # many zero and tied distances
    for keep in (1, 10, 10**6):
        assert median_pairwise_distance(x, block=7, keep=keep) == _median_of_all_pairs(x)
    assert median_pairwise_distance(torch.zeros(40, 2, dtype=torch.float64), block=7, keep=3) == 0.0
    # distinct distances: the upper middle value (a wrong rank) differs from the result
    y = sample_toy("moons", 100, gen(2)).double()
    d = torch.cdist(y, y)
    d = d[torch.ones_like(d, dtype=torch.bool).triu(1)].sort().values
    assert median_pairwise_distance(y, keep=10) == d[(len(d) - 1) // 2].item() != d[len(d) // 2].item()
    with pytest.raises(ValueError, match="at least 2 points"):
        median_pairwise_distance(y[:1])


def test_mmd_over_blocks_equals_the_whole_matrix():
    # blocks of 64 rows (one straddles the a/b boundary at row 300) against the (n + m)^2 formula, in float64
    a, b = sample_toy("moons", 300, gen(5)).double(), sample_toy("moons", 200, gen(6)).double() + 0.2
    both = torch.cat([a, b])
    d = torch.cdist(both, both)
    h = d[~torch.eye(len(both), dtype=torch.bool)].median().item()
    k = torch.exp(-d**2 / (2 * h**2))
    n, m = len(a), len(b)
    whole = ((k[:n, :n].sum() - n) / (n * (n - 1)) + (k[n:, n:].sum() - m) / (m * (m - 1))
             - 2 * k[:n, n:].mean()).item()
    # float64 sums of 2.5e5 terms of size <= 1 in two orders: differences ~ 1e-16 x 2.5e5 / (n m) per mean
    assert mmd_rbf(a, b, block=64) == pytest.approx(whole, abs=1e-12)
    assert mmd_rbf(a, b, bandwidth=0.3, block=64) != pytest.approx(whole, abs=1e-6)   # the bandwidth matters
    with pytest.raises(ValueError, match="block"):
        mmd_rbf(a, b, block=0)


def test_noise_floor():
    calls = []

    def draw(n):
        calls.append(n)
        return sample_toy("moons", n, gen(len(calls)))

    floor = noise_floor(lambda a, b: sliced_wasserstein(a, b, generator=gen(0)), draw, 300, repeats=3)
    assert calls == [300] * 6
    assert 0 < floor < 0.1
    # the floor shrinks with the sample size (~ 1/sqrt(n))
    big = noise_floor(lambda a, b: sliced_wasserstein(a, b, generator=gen(0)), draw, 4800, repeats=3)
    assert big < 0.5 * floor


def test_nearest_mode_rms():
    modes = eight_gaussian_modes()
    # 8 points: cdist subtracts coordinates directly (its matrix-product form starts above 25), so exactly 0
    assert nearest_mode_rms(modes, modes) == 0.0
    # float32 mode + 0.1 is rounded once, by <= ulp(2) / 2 = 1.2e-7, i.e. 1.2e-6 of 0.1 (measured 3.8e-8)
    assert nearest_mode_rms(modes + torch.tensor([0.0, 0.1]), modes) == pytest.approx(0.1, rel=1.2e-6)
    # Gaussian blobs of std s in 2D: rms distance to the centre is s sqrt(2)
    x = eight_gaussians(20_000, gen(5), std=0.1)
    assert nearest_mode_rms(x, modes) == pytest.approx(0.1 * math.sqrt(2), rel=0.02)


def test_errors():
    a = torch.randn(10, 2)
    with pytest.raises(ValueError, match="a and b must have the same number of samples, got 10 and 9"):
        sliced_wasserstein(a, torch.randn(9, 2))
    with pytest.raises(ValueError, match=r"b must have last dimension 2, got shape \(10, 3\)"):
        sliced_wasserstein(a, torch.randn(10, 3))
    with pytest.raises(ValueError, match=r"b must have last dimension 2, got shape \(10, 3\)"):
        mmd_rbf(a, torch.randn(10, 3))
    with pytest.raises(ValueError, match=r"a must have 2 dimensions, got shape \(10,\)"):
        mmd_rbf(torch.randn(10), torch.randn(10))
    with pytest.raises(ValueError, match=r"modes must have last dimension 2, got shape \(8, 3\)"):
        nearest_mode_rms(a, torch.randn(8, 3))
    with pytest.raises(ValueError, match="n_projections must be >= 1, got 0"):
        sliced_wasserstein(a, a, n_projections=0)


def test_mmd_needs_two_samples_a_side():
    a = torch.randn(5, 2, generator=torch.Generator().manual_seed(0))
    for x, y in ((a[:1], a), (a, a[:1])):
        with pytest.raises(ValueError, match=r"a and b need at least 2 samples each, got [15] and [15]"):
            mmd_rbf(x, y)
    assert math.isfinite(mmd_rbf(a[:2], a[2:4]))
