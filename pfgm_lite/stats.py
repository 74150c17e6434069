"""The statistics every comparison in the series reports: a mean with its 95% interval over seeds, the paired
difference of two methods with its verdict, the median with a distribution-free interval, and "NFE to reach a bar".

  t-interval       mean +- t_{n-1, 0.975} s / sqrt(n)   (Student's t with n - 1 degrees of freedom, scipy.stats.t)
  paired verdict   d_k = a_k - b_k on the same seed k; a lower score is better, so "ahead" when the interval of the
                   mean d lies below 0, "behind" when above, "tie" when it contains 0
  median interval  order statistics (x_(j), x_(n+1-j)): coverage 1 - 2 P(Binomial(n, 1/2) < j), exact for any
                   continuous distribution; with 5 seeds the widest, (min, max), covers 93.75%, and that is reported
  NFE to a bar     on each seed's curve, the running best score over increasing NFE (a monotone envelope), and the
                   first NFE where it is <= bar, interpolated linearly in log NFE; None when never reached
"""
from __future__ import annotations

import math
from typing import Sequence

from scipy import stats as scipy_stats

VERDICTS = ("ahead", "behind", "tie")


def _finite_values(name: str, values: Sequence[float], minimum: int = 2) -> list[float]:
    out = [float(v) for v in values]
    if len(out) < minimum:
        raise ValueError(f"{name} needs at least {minimum} values, got {len(out)}")
    if not all(math.isfinite(v) for v in out):
        raise ValueError(f"{name} must be finite, got {out}")
    return out


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the mean of n >= 2 values and its Student-t interval with n - 1 degrees of freedom."""
    x = _finite_values("values", values)
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    n = len(x)
    mean = sum(x) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in x) / (n - 1))
    half = scipy_stats.t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def paired_difference(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> dict:
    """a - b seed by seed (a[k] and b[k] from the same seed k; lower is better): {"diff_mean", "ci_low", "ci_high",
    "verdict" ("ahead": a better, "behind": a worse, "tie": the interval contains 0), "n_seeds"}."""
    a, b = _finite_values("a", a), _finite_values("b", b)
    if len(a) != len(b):
        raise ValueError(f"a paired difference needs one value of each per seed: got {len(a)} and {len(b)}")
    mean, low, high = t_interval([x - y for x, y in zip(a, b)], level)
    verdict = "ahead" if high < 0 else "behind" if low > 0 else "tie"
    return dict(diff_mean=mean, ci_low=low, ci_high=high, verdict=verdict, n_seeds=len(a))


def median_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float, float]:
    """(median, low, high, coverage): the order-statistic interval (x_(j), x_(n+1-j)) with the largest j whose exact
    coverage 1 - 2 P(Bin(n, 1/2) < j) reaches `level`, or (min, max) and its coverage when none does.

    Values may be math.inf ("not reached"); the median and the bounds are then inf where the order says so.
    """
    x = sorted(float(v) for v in values)
    if not x or any(math.isnan(v) for v in x):
        raise ValueError(f"values must be a non-empty list of numbers (inf allowed, not NaN), got {x}")
    n = len(x)
    median = x[n // 2] if n % 2 else 0.5 * (x[n // 2 - 1] + x[n // 2])
    j, coverage = 1, 1 - 2 * scipy_stats.binom.cdf(0, n, 0.5)
    for k in range(2, (n + 1) // 2 + 1):
        c = 1 - 2 * scipy_stats.binom.cdf(k - 1, n, 0.5)
        if c < level:
            break
        j, coverage = k, c
    return median, x[j - 1], x[n - j], float(coverage)


def nfe_to_reach(nfe: Sequence[float], scores: Sequence[float], bar: float) -> float | None:
    """The NFE at which a seed's curve first reaches score <= bar, on its monotone envelope (the best score so far as
    NFE grows), linear in log NFE between grid points; None when the envelope never reaches the bar."""
    pairs = sorted(zip(map(float, nfe), map(float, scores)))
    if not pairs or any(n <= 0 for n, _ in pairs):
        raise ValueError(f"nfe must be positive numbers, got {[n for n, _ in pairs]}")
    best, previous = math.inf, None
    for n, s in pairs:
        envelope = min(best, s)                        # inf / NaN scores (failed runs) never improve the envelope
        if envelope <= bar:
            if previous is None or not math.isfinite(previous[1]) or envelope == bar:
                return n
            (n0, s0) = previous
            w = (s0 - bar) / (s0 - envelope)
            return math.exp(math.log(n0) + w * (math.log(n) - math.log(n0)))
        best = envelope if not math.isnan(envelope) else best
        previous = (n, best)
    return None
