"""Log-bucketed histograms for latency percentiles (the DDSketch mapping).

A positive value x falls in bucket i = ceil(log(x) / log(gamma)) with gamma = (1 + a) / (1 - a)
and a = RELATIVE_ACCURACY. The bucket's representative value 2 * gamma**i / (gamma + 1) lies
within a relative error of `a` (1%) of every value in the bucket. Histograms are maps from bucket
index to count, so they merge by summing: rollup rows, hours and databases all agree.

The percentile q (0 <= q <= 1) of n values, everywhere in tallyql, is the linear interpolation
between the closest ranks: with the values in ascending order v[0] .. v[n - 1] and
h = q * (n - 1), it is v[floor(h)] + (h - floor(h)) * (v[ceil(h)] - v[floor(h)]), which is
PostgreSQL's `percentile_cont` and NumPy's default `np.percentile(..., method="linear")`. Exact
paths compute it from the two values of ranks floor(h) and ceil(h) (`interpolate`); the sketch
interpolates the same way between its estimates of those two values, each within 1% relative
error, so its answer is within 1% of the exact one too (a weighted mean of two values each
within 1% is within 1% of their weighted mean). Values at or below ZERO_THRESHOLD_MS share
bucket ZERO_BUCKET and read back as 0.
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


def neighbour_ranks(q: float, n: int) -> tuple[int, int, float]:
    """(floor(h), ceil(h), h - floor(h)) with h = q * (n - 1), in float arithmetic (as
    PostgreSQL computes it): the 0-based ranks whose values the q-quantile of n values
    interpolates between, and the weight of the upper one."""
    h = q * (n - 1)
    low = math.floor(h)
    return low, min(low + 1, n - 1) if h > low else low, h - low


def interpolate(low: float, high: float, t: float) -> float:
    """low + t * (high - low), computed as NumPy's linear method does (from the nearer end),
    so that exact answers equal `np.percentile` to the last bit where the inputs agree."""
    diff = high - low
    return high - diff * (1 - t) if t >= 0.5 else low + diff * t


def quantile(counts: Mapping[int, int] | Iterable[tuple[int, int]], q: float) -> float | None:
    """The q-quantile (0 <= q <= 1) of a histogram given as bucket -> count: interpolated
    between the representative values of the buckets holding ranks floor(h) and ceil(h)."""
    items = sorted(counts.items() if isinstance(counts, Mapping) else counts)
    total = sum(c for _, c in items)
    if total <= 0:
        return None
    low, high, t = neighbour_ranks(q, total)
    found: dict[int, float] = {}
    seen = 0
    for bucket, count in items:
        seen += count
        for rank in (low, high):
            if rank not in found and seen > rank:
                found[rank] = value_of(bucket)
        if high in found:
            break
    return interpolate(found[low], found[high], t)


def exact_quantile(values: Iterable[float], q: float) -> float | None:
    """The exact q-quantile, interpolated between the closest ranks (tests and exact paths)."""
    ordered = sorted(values)
    if not ordered:
        return None
    low, high, t = neighbour_ranks(q, len(ordered))
    return interpolate(ordered[low], ordered[high], t)
