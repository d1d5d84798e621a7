"""Small statistics for evaluation reports: means with bootstrap intervals, paired
differences, percentiles. Seeded, so the same answers always give the same report."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

__all__ = ["Interval", "bootstrap_mean", "paired_difference", "percentile"]

RESAMPLES = 2000


class Interval(tuple[float, float, float]):
    """``(mean, low, high)``: a mean and its 95% bootstrap percentile interval."""

    __slots__ = ()

    def __new__(cls, mean: float, low: float, high: float) -> Interval:
        return super().__new__(cls, (mean, low, high))

    @property
    def mean(self) -> float:
        return float(self[0])

    @property
    def low(self) -> float:
        return float(self[1])

    @property
    def high(self) -> float:
        return float(self[2])


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), ``q`` in [0, 100]."""
    if not values:
        return math.nan
    data = sorted(values)
    pos = (len(data) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def bootstrap_mean(values: Sequence[float], *, seed: int = 0, resamples: int = RESAMPLES) -> Interval | None:
    """The mean of ``values`` with a 95% bootstrap interval; None for no values."""
    n = len(values)
    if n == 0:
        return None
    mean = sum(values) / n
    if n == 1:
        return Interval(mean, mean, mean)
    rng = random.Random(seed)
    means = sorted(sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    return Interval(mean, percentile(means, 2.5), percentile(means, 97.5))


def paired_difference(a: Sequence[float], b: Sequence[float], *, seed: int = 0) -> Interval | None:
    """Mean of ``a[i] - b[i]`` over pairs, with a 95% bootstrap interval (pairs resampled together)."""
    if len(a) != len(b):
        raise ValueError("paired samples must have the same length")
    return bootstrap_mean([x - y for x, y in zip(a, b)], seed=seed)
