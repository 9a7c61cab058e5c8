"""Log-bucketed histograms for latency percentiles (the DDSketch mapping).

A positive value x falls in bucket i = ceil(log(x) / log(gamma)) with gamma = (1 + a) / (1 - a)
and a = RELATIVE_ACCURACY. The bucket's representative value 2 * gamma**i / (gamma + 1) lies
within a relative error of `a` (1%) of every value in the bucket. Histograms are maps from bucket
index to count, so they merge by summing: rollup rows, hours and databases all agree.

The percentile q of n values is defined as the value of rank floor(q * (n - 1)) in ascending
order (the "lower" interpolation); the sketch returns that value within 1% relative error.
Values at or below ZERO_THRESHOLD_MS share bucket ZERO_BUCKET and read back as 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

RELATIVE_ACCURACY = 0.01
GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_LOG_GAMMA = math.log(GAMMA)
ZERO_THRESHOLD_MS = 1e-6
ZERO_BUCKET = -32768
MAX_VALUE_MS = 1e12


def bucket_of(value: float | None) -> int | None:
    """The bucket index of a value, or None when the value is missing."""
    if value is None:
        return None
    if value <= ZERO_THRESHOLD_MS:
        return ZERO_BUCKET
    return math.ceil(math.log(min(value, MAX_VALUE_MS)) / _LOG_GAMMA)


def value_of(bucket: int) -> float:
    """The representative value of a bucket."""
    if bucket == ZERO_BUCKET:
        return 0.0
    return 2.0 * GAMMA**bucket / (GAMMA + 1.0)


def quantile(counts: Mapping[int, int] | Iterable[tuple[int, int]], q: float) -> float | None:
    """The q-quantile (0 <= q <= 1) of a histogram given as bucket -> count."""
    items = sorted(counts.items() if isinstance(counts, Mapping) else counts)
    total = sum(c for _, c in items)
    if total <= 0:
        return None
    rank = math.floor(q * (total - 1))
    seen = 0
    for bucket, count in items:
        seen += count
        if seen > rank:
            return value_of(bucket)
    return value_of(items[-1][0])


def exact_quantile(values: Iterable[float], q: float) -> float | None:
    """The exact q-quantile by the same rank rule, for tests and exact paths."""
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[math.floor(q * (len(ordered) - 1))]
