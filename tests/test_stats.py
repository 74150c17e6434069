"""Facts about pfgm_lite/stats.py (intervals, verdicts, NFE to a bar) and metrics.energy_distance, checked against
scipy's own implementations and against cases worked by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats as scipy_stats

from pfgm_lite import metrics
from pfgm_lite.stats import median_interval, nfe_to_reach, paired_difference, t_interval


def test_t_interval_is_scipy_s_one_sample_t_interval():
    values = [1.2, 0.9, 1.5, 1.1, 1.3]
    mean, low, high = t_interval(values)
    ci = scipy_stats.ttest_1samp(values, 0.0).confidence_interval(0.95)
    assert mean == pytest.approx(np.mean(values))
    assert (low, high) == pytest.approx((ci.low, ci.high), rel=1e-12)
    # with 5 values the half-width is t_{4, 0.975} = 2.776 standard errors, not the normal's 1.96
    se = np.std(values, ddof=1) / math.sqrt(5)
    assert (high - low) / 2 == pytest.approx(2.7764451 * se, rel=1e-6)


def test_paired_verdicts():
    base = [1.0, 2.0, 3.0, 4.0, 5.0]
    better = [b - 0.5 + 0.01 * k for k, b in enumerate(base)]      # 0.5 lower on every seed: ahead
    assert paired_difference(better, base)["verdict"] == "ahead"
    assert paired_difference(base, better)["verdict"] == "behind"
    # the same means unpaired would overlap (spread 1.6 across seeds); paired, the seed effect cancels
    m_a, lo_a, hi_a = t_interval(better)
    m_b, lo_b, hi_b = t_interval(base)
    assert lo_b < hi_a
    noisy = [b + d for b, d in zip(base, (0.3, -0.4, 0.2, -0.1, 0.05))]
    out = paired_difference(noisy, base)
    assert out["verdict"] == "tie" and out["ci_low"] < 0 < out["ci_high"] and out["n_seeds"] == 5
    with pytest.raises(ValueError, match="one value of each per seed: got 5 and 4"):
        paired_difference(base, base[:4])
    with pytest.raises(ValueError, match="a must be finite"):
        paired_difference([math.inf] + base[1:], base)


def test_median_interval_has_the_exact_binomial_coverage():
    median, low, high, coverage = median_interval([3.0, 1.0, 2.0, 5.0, 4.0])
    assert (median, low, high) == (3.0, 1.0, 5.0) and coverage == pytest.approx(1 - 2 / 32)   # 93.75% < 95%
    values = list(range(10))
    median, low, high, coverage = median_interval(values)
    assert (median, low, high) == (4.5, 1, 8) and coverage == pytest.approx(1 - 2 * 11 / 1024)
    # checked by simulation: the interval of 10 standard normals holds the true median 0 about 97.9% of the time
    rng = np.random.default_rng(0)
    hits = sum(lo <= 0 <= hi for lo, hi in (median_interval(rng.standard_normal(10))[1:3] for _ in range(4000)))
    assert abs(hits / 4000 - coverage) < 4 * math.sqrt(coverage * (1 - coverage) / 4000)
    assert median_interval([1.0, math.inf, math.inf])[0] == math.inf


def test_nfe_to_reach_a_bar():
    nfe = [2, 4, 8, 16]
    assert nfe_to_reach(nfe, [5.0, 3.0, 1.0, 0.5], 1.0) == 8
    # halfway between 3.0 at 4 and 1.0 at 8 in score: halfway in log NFE, sqrt(32)
    assert nfe_to_reach(nfe, [5.0, 3.0, 1.0, 0.5], 2.0) == pytest.approx(math.sqrt(32))
    # a curve that dips under the bar then rises reaches it at the dip (the envelope keeps the best so far)
    assert nfe_to_reach(nfe, [5.0, 0.9, 1.5, 1.2], 1.0) == pytest.approx(math.exp(math.log(2) + 4 / 4.1 * math.log(2)))
    assert nfe_to_reach(nfe, [5.0, 3.0, 2.0, 1.5], 1.0) is None
    assert nfe_to_reach(nfe, [math.inf, 0.5, 0.4, 0.3], 1.0) == 4          # a failed first point: no interpolation
    assert nfe_to_reach([16, 2, 8, 4], [0.5, 5.0, 1.0, 3.0], 2.0) == pytest.approx(math.sqrt(32))   # any order


@pytest.mark.parametrize("n, m", [(300, 300), (200, 350)])
def test_energy_distance_is_scipy_s_in_one_dimension(n, m):
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, 1, generator=g, dtype=torch.float64), 0.3 + torch.randn(m, 1, generator=g, dtype=torch.float64)
    ours = metrics.energy_distance(a, b, block=64)
    assert ours == pytest.approx(scipy_stats.energy_distance(a[:, 0].numpy(), b[:, 0].numpy()), rel=1e-10)
    assert metrics.energy_distance(a, a) == 0.0
    # in 2D it sees a shift along either axis, unlike a 1D projection onto the other one
    a2, b2 = torch.randn(2000, 2, generator=g), torch.randn(2000, 2, generator=g)
    shifted = b2 + torch.tensor([0.0, 0.5])
    assert metrics.energy_distance(a2, shifted) > 3 * metrics.energy_distance(a2, b2)
