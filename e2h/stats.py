"""Means with 95% confidence intervals over seeds, and paired differences (stdlib only).

A sweep has a handful of seeds per group, so the interval must use Student's t, not the
normal 1.96: with 3 seeds the t quantile is 4.30 and the normal one would claim an interval
less than half as wide as the data supports. ``docs/benchmarks.md`` reports the simulation
with the same t intervals (scipy's ``t.ppf`` there); the server may not depend on scipy, so
the quantile comes from a table for 1..30 degrees of freedom (scipy's values to 6 decimals)
and, above 30, from the Cornish-Fisher expansion of the t quantile around the normal one
(Abramowitz & Stegun 26.7.5), which is within 3e-8 of the exact value there.

Paired differences: entry ``s`` of both samples is the same seed (same data order, same
initialisation), so seed-to-seed noise cancels and the interval is that of the differences.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# t_{0.975, df} for df = 1..30.
_T975 = (
    12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004, 2.262157, 2.228139,
    2.200985, 2.178813, 2.160369, 2.144787, 2.131450, 2.119905, 2.109816, 2.100922, 2.093024, 2.085963,
    2.079614, 2.073873, 2.068658, 2.063899, 2.059539, 2.055529, 2.051831, 2.048407, 2.045230, 2.042272,
)
_Z975 = statistics.NormalDist().inv_cdf(0.975)


def t975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom (two-sided 95%)."""
    if df < 1:
        raise ValueError(f"df must be at least 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z, v = _Z975, float(df)
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    return z + g1 / v + g2 / v**2 + g3 / v**3 + g4 / v**4


@dataclass(frozen=True)
class Estimate:
    """The mean of ``n`` values with its 95% t interval; the interval is None below 2 values."""

    n: int
    mean: float | None
    sd: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None


def mean_ci(values: Sequence[float]) -> Estimate:
    """Mean, sample standard deviation and 95% t interval of ``values``."""
    n = len(values)
    if n == 0:
        return Estimate(0, None)
    mean = math.fsum(values) / n
    if n == 1:
        return Estimate(1, mean)
    # Two passes in floats: statistics.stdev is exact (fractions) and 50x slower, which a
    # 100-run summary's thousand-odd intervals would feel; the rounding here is below 1e-15.
    sd = math.sqrt(math.fsum((x - mean) ** 2 for x in values) / (n - 1))
    half = t975(n - 1) * sd / math.sqrt(n)
    return Estimate(n, mean, sd, mean - half, mean + half)


def paired_difference(a: Mapping[int, float], b: Mapping[int, float]) -> Estimate:
    """Mean of ``a[s] - b[s]`` over the keys (seeds) both have, with its 95% t interval."""
    return mean_ci([a[s] - b[s] for s in a if s in b])
