"""Chooses where each part of a question is answered: a rollup, or raw events.

A query's metrics fall into measure groups (sums, a histogram, or one distinct column), and
each group is planned on its own: the first (smallest) rollup that keeps every column the
group, the dimensions and the filter need. Its window is cut into pieces:
  raw   the ragged edges shorter than an hour (and everything, when no rollup covers),
  hour  whole hours,
  day   whole UTC days, when the buckets are whole UTC days (or there is one bucket)
so that no rollup row straddles a bucket boundary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tallyql.engine.buckets import Bucketing, Granularity
from tallyql.engine.filters import EventFilterSpec
from tallyql.engine.registry import Dimension, DimensionRef
from tallyql.storage.rollups import HISTOGRAM_ROLLUPS, ROLLUPS, TAG, Rollup

TIME_DIMENSIONS = frozenset({Dimension.HOUR_OF_DAY, Dimension.DAY_OF_WEEK})
RAW_ONLY_DIMENSIONS = frozenset({Dimension.METADATA, Dimension.SESSION})


@dataclass(frozen=True)
class Piece:
    grain: str  # "raw", "h" or "d"
    start: datetime
    end: datetime

    def describe(self) -> dict[str, str]:
        return {"grain": self.grain, "start": self.start.isoformat(), "end": self.end.isoformat()}


@dataclass
class Plan:
    group: str
    rollup: Rollup | None
    pieces: list[Piece]
    reason: str
    sql: list[str] = field(default_factory=list)

    @property
    def source(self) -> str:
        if self.rollup is None:
            return "raw"
        return f"{'histogram' if self.rollup.histogram else 'rollup'}:{self.rollup.name}"

    def describe(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "source": self.source,
            "reason": self.reason,
            "pieces": [p.describe() for p in self.pieces],
            "sql": self.sql,
        }


def needed_columns(
    dimensions: tuple[DimensionRef, ...], spec: EventFilterSpec, distinct: str | None
) -> tuple[set[str], str | None]:
    """Event columns a source must keep, or a reason why only raw events can answer."""
    needed = {c for c in spec.columns_used() if c not in ("tags", "metadata")}
    if spec.metadata:
        return needed, "metadata filter"
    if spec.tags:
        if len(spec.tags) > 1:
            return needed, "filter on several tags"
        needed.add(TAG)
    for ref in dimensions:
        if ref.dimension in RAW_ONLY_DIMENSIONS:
            return needed, f"{ref.dimension.value} dimension"
        column = ref.definition.column
        if column is not None and column != "workspace_id":  # every rollup key starts with it
            needed.add(column)
    if distinct is not None:
        needed.add(distinct)
    return needed, None


def covering_rollup(needed: set[str], histogram: bool) -> Rollup | None:
    for rollup in HISTOGRAM_ROLLUPS if histogram else ROLLUPS:
        dims = set(rollup.dims)
        if TAG in dims and TAG not in needed:
            continue  # the tag rollup counts an event once per tag
        if needed <= dims:
            return rollup
    return None


def _aligned(instants: list[datetime], seconds: int) -> bool:
    return all(int(i.timestamp()) % seconds == 0 for i in instants)


def grains_allowed(bucketing: Bucketing, dimensions: tuple[DimensionRef, ...]) -> tuple[bool, bool]:
    """(hour rows usable, day rows usable) for these buckets and dimensions."""
    if bucketing.granularity is Granularity.MINUTE:
        return False, False
    time_dims = {r.dimension for r in dimensions} & TIME_DIMENSIONS
    offsets = [offset for _, offset in bucketing.transitions]
    boundaries = bucketing.boundaries()
    hour_ok = _aligned(boundaries, 3600) and (not time_dims or all(o % 3600 == 0 for o in offsets))
    day_ok = (
        hour_ok
        and bucketing.granularity is not Granularity.HOUR
        and _aligned(boundaries, 86400)
        and Dimension.HOUR_OF_DAY not in time_dims
        and (Dimension.DAY_OF_WEEK not in time_dims or all(o == 0 for o in offsets))
    )
    return hour_ok, day_ok


def _ceil(value: datetime, seconds: int) -> datetime:
    ts = int(value.timestamp())
    rounded = -(-ts // seconds) * seconds
    if rounded == ts and value.microsecond:
        rounded += seconds
    return datetime.fromtimestamp(rounded, UTC)


def _floor(value: datetime, seconds: int) -> datetime:
    ts = int(value.timestamp())
    return datetime.fromtimestamp(ts - ts % seconds, UTC)


def split_window(start: datetime, end: datetime, hour_ok: bool, day_ok: bool) -> list[Piece]:
    """Raw edges, whole hours and whole UTC days covering [start, end) exactly once."""
    if not hour_ok:
        return [Piece("raw", start, end)]
    h0, h1 = _ceil(start, 3600), _floor(end, 3600)
    if h0 >= h1:
        return [Piece("raw", start, end)]
    pieces = []
    if start < h0:
        pieces.append(Piece("raw", start, h0))
    d0, d1 = _ceil(h0, 86400), _floor(h1, 86400)
    if day_ok and d0 < d1:
        if h0 < d0:
            pieces.append(Piece("h", h0, d0))
        pieces.append(Piece("d", d0, d1))
        if d1 < h1:
            pieces.append(Piece("h", d1, h1))
    else:
        pieces.append(Piece("h", h0, h1))
    if h1 < end:
        pieces.append(Piece("raw", h1, end))
    return pieces


def plan_group(
    group: str,
    bucketing: Bucketing,
    dimensions: tuple[DimensionRef, ...],
    spec: EventFilterSpec,
    histogram: bool = False,
    distinct: str | None = None,
    force_raw: bool = False,
) -> Plan:
    start, end = bucketing.start, bucketing.end
    raw = [Piece("raw", start, end)]
    if force_raw:
        return Plan(group, None, raw, "raw path forced")
    needed, raw_reason = needed_columns(dimensions, spec, distinct)
    if raw_reason:
        return Plan(group, None, raw, raw_reason)
    rollup = covering_rollup(needed, histogram)
    if rollup is None:
        return Plan(group, None, raw, "no rollup keeps " + ", ".join(sorted(needed)))
    hour_ok, day_ok = grains_allowed(bucketing, dimensions)
    pieces = [
        p if p.grain == "raw" or p.grain in rollup.grains else Piece("raw", p.start, p.end)
        for p in split_window(start, end, hour_ok, day_ok)
    ]
    reason = "smallest covering rollup" if hour_ok else "buckets not on whole UTC hours"
    return Plan(group, rollup, pieces, reason)
