"""Sparse histograms of sketch buckets (`tallyql.sketch`) as compact blobs, and their merging
and quantiles with NumPy.

A histogram rollup row keeps one blob per measured value (latency, TTFT): its non-empty
buckets in ascending order as big-endian int16 indices, followed by their counts as big-endian
uint64 (network order, which PostgreSQL's int2send and int8send write, so that the database
can build blobs itself). One row per period and key instead of one row per bucket makes a day of
a busy workspace's latencies one row of a few kilobytes instead of hundreds of rows, which
both the writer and the queries pay for. The encoding is canonical (sorted, no zeros), so equal
histograms are equal blobs.

Merging and quantiles run here rather than in SQL, the same on both databases: counts add
exactly (uint64), and the quantile is interpolated between the buckets holding ranks floor(h)
and ceil(h), h = q * (n - 1), read off the cumulative counts (`tallyql.sketch`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from tallyql import sketch

_BUCKET = np.dtype(">i2")
_COUNT = np.dtype(">u8")
_ENTRY_BYTES = _BUCKET.itemsize + _COUNT.itemsize

Buckets = npt.NDArray[np.int16]
Counts = npt.NDArray[np.uint64]


def encode(buckets: Buckets, counts: Counts) -> bytes | None:
    """The blob of a histogram given as sorted unique buckets with positive counts (None when
    empty)."""
    if len(buckets) == 0:
        return None
    return buckets.astype(_BUCKET, copy=False).tobytes() + counts.astype(_COUNT).tobytes()


def decode(blob: bytes | None) -> tuple[Buckets, Counts]:
    if not blob:
        return np.empty(0, _BUCKET), np.empty(0, _COUNT)
    n = len(blob) // _ENTRY_BYTES
    if n * _ENTRY_BYTES != len(blob):
        raise ValueError(f"a histogram blob of {len(blob)} bytes is not whole entries")
    buckets = np.frombuffer(blob, _BUCKET, count=n)
    counts = np.frombuffer(blob, _COUNT, count=n, offset=n * _BUCKET.itemsize)
    return buckets, counts


def combine(
    buckets: Sequence[npt.NDArray[np.integer]], counts: Sequence[npt.NDArray[np.integer]]
) -> tuple[Buckets, Counts]:
    """The sum of several (buckets, counts) pieces, canonical: sorted, unique, no zeros."""
    if not buckets:
        return np.empty(0, _BUCKET), np.empty(0, _COUNT)
    b = np.concatenate(buckets).astype(np.int32)
    c = np.concatenate(counts).astype(np.uint64)
    if len(b) == 0:
        return np.empty(0, _BUCKET), np.empty(0, _COUNT)
    unique, inverse = np.unique(b, return_inverse=True)
    summed = np.zeros(len(unique), np.uint64)
    np.add.at(summed, inverse, c)
    keep = summed > 0
    return unique[keep].astype(_BUCKET), summed[keep]


def merge_blobs(blobs: Iterable[bytes | None]) -> bytes | None:
    parts = [decode(b) for b in blobs if b]
    return encode(*combine([p[0] for p in parts], [p[1] for p in parts]))


@dataclass
class Accumulator:
    """Pieces of one histogram gathered from rollup blobs and raw (bucket, count) rows."""

    buckets: list[npt.NDArray[np.integer]] = field(default_factory=list)
    counts: list[npt.NDArray[np.integer]] = field(default_factory=list)
    raw_buckets: list[int] = field(default_factory=list)
    raw_counts: list[int] = field(default_factory=list)

    blobs: list[bytes] = field(default_factory=list)
    """Decoded together when merged (`decode_many`): one NumPy pass, not one per blob."""

    def add_blob(self, blob: bytes | None) -> None:
        if blob:
            self.blobs.append(blob)

    def add(self, bucket: int, count: int) -> None:
        if count:
            self.raw_buckets.append(bucket)
            self.raw_counts.append(count)

    def merged(self) -> tuple[Buckets, Counts]:
        buckets, counts = list(self.buckets), list(self.counts)
        if self.blobs:
            _, b, c = decode_many(self.blobs)
            buckets.append(b)
            counts.append(c)
        if self.raw_buckets:
            buckets.append(np.asarray(self.raw_buckets, np.int32))
            counts.append(np.asarray(self.raw_counts, np.uint64))
        return combine(buckets, counts)

    def quantiles(self, qs: Sequence[float]) -> dict[float, float]:
        """Each q-quantile by the sketch's definition; empty when there are no values."""
        buckets, counts = self.merged()
        if len(buckets) == 0:
            return {}
        cumulative = np.cumsum(counts)
        total = int(cumulative[-1])
        last = len(buckets) - 1

        def at(rank: int) -> float:
            i = int(np.searchsorted(cumulative, rank, side="right"))
            return sketch.value_of(int(buckets[min(i, last)]))

        out = {}
        for q in qs:
            low, high, t = sketch.neighbour_ranks(q, total)
            out[q] = sketch.interpolate(at(low), at(high), t)
        return out


def decode_many(blobs: Sequence[bytes | None]) -> tuple[npt.NDArray[np.int64], Buckets, Counts]:
    """Every entry of several blobs at once: (index of its blob, bucket, count). The blobs are
    joined and their entries gathered by computed offsets, with no Python work per blob
    beyond its length: a question over a wide rollup merges thousands of them."""
    sizes = np.fromiter((len(b) if b else 0 for b in blobs), np.int64, len(blobs))
    if np.any(sizes % _ENTRY_BYTES):
        raise ValueError("a histogram blob is not whole entries")
    lengths = sizes // _ENTRY_BYTES
    owners = np.repeat(np.arange(len(blobs), dtype=np.int64), lengths)
    if not len(owners):
        return owners, np.empty(0, _BUCKET), np.empty(0, _COUNT)
    data = np.frombuffer(b"".join(b for b in blobs if b), np.uint8)
    starts = np.cumsum(sizes) - sizes  # each blob's first byte
    first = np.cumsum(lengths) - lengths  # each blob's first entry
    j = np.arange(len(owners), dtype=np.int64) - first[owners]  # entry index within its blob
    at_bucket = starts[owners] + 2 * j
    at_count = starts[owners] + 2 * lengths[owners] + 8 * j
    buckets = data[at_bucket[:, None] + np.arange(2)].copy().view(_BUCKET).ravel()
    counts = data[at_count[:, None] + np.arange(8)].copy().view(_COUNT).ravel()
    return owners, buckets, counts


def combine_entries(
    keys: npt.NDArray[np.integer],
    buckets: npt.NDArray[np.integer],
    counts: npt.NDArray[np.integer],
    n_keys: int,
) -> list[bytes | None]:
    """The blob of each of `n_keys` histograms from entries (key index, bucket, count), in
    any order and with repeats."""
    if len(keys) == 0:
        return [None] * n_keys
    keys, buckets = keys.astype(np.int64), buckets.astype(np.int64)
    order = np.lexsort((buckets, keys))
    keys, buckets, counts = keys[order], buckets[order], counts.astype(np.uint64)[order]
    starts = np.flatnonzero(
        np.concatenate(([True], (keys[1:] != keys[:-1]) | (buckets[1:] != buckets[:-1])))
    )
    keys, buckets, sums = keys[starts], buckets[starts], np.add.reduceat(counts, starts)
    keep = sums > 0
    keys, buckets, sums = keys[keep], buckets[keep], sums[keep]
    bounds = np.searchsorted(keys, np.arange(n_keys + 1)).tolist()
    b16, c64 = buckets.astype(_BUCKET), sums.astype(_COUNT)
    out: list[bytes | None] = []
    for k in range(n_keys):
        lo, hi = bounds[k], bounds[k + 1]
        out.append(b16[lo:hi].tobytes() + c64[lo:hi].tobytes() if hi > lo else None)
    return out
