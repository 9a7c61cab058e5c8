"""Chooses where each part of a question is answered: a rollup, or raw events.

A query's metrics fall into measure groups (sums, a histogram, or one distinct column), and
each group is planned on its own: the first (smallest) rollup that keeps every column the
group, the dimensions and the filter need. Its window is cut into pieces:
  raw   the ragged edges shorter than an hour (and everything, when no rollup covers),
  hour  whole hours,
  day   whole UTC days, when the buckets are whole UTC days (or there is one bucket),
  week  whole weeks from Monday 00:00 UTC, when the buckets are such weeks (or there is one)
so that no rollup row straddles a bucket boundary.

Percentiles (histogram groups) are estimates within PERCENTILE_RELATIVE_ERROR of the exact
value (DDSketch buckets, `tallyql.sketch`), on rollups and raw edges alike; only the forced raw
path (`X-Tallyql-Plan: raw`) computes them exactly, by ordering the events' values, so that a
planned answer can be checked against it. Explain states which.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from tallyql.engine.query.buckets import Bucketing, Granularity
from tallyql.engine.query.filters import EventFilterSpec
from tallyql.engine.query.registry import Dimension, DimensionRef
from tallyql.sketch import RELATIVE_ACCURACY
from tallyql.storage.dialect import Dialect
from tallyql.storage.rollups.declarations import (
    GRAINS,
    HISTOGRAM_ROLLUPS,
    LOW_CARDINALITY,
    ROLLUPS,
    TAG,
    Rollup,
    grain_start,
)

PERCENTILE_RELATIVE_ERROR = RELATIVE_ACCURACY
"""The documented bound of a planned percentile: |estimate - exact| <= 1% of exact (values at
or below 1e-6 ms read as 0)."""
TIME_DIMENSIONS = frozenset({Dimension.HOUR_OF_DAY, Dimension.DAY_OF_WEEK})
RAW_ONLY_DIMENSIONS = frozenset({Dimension.METADATA, Dimension.SESSION})


class Grain(StrEnum):
    """What a piece of a window is read from: raw events, or a rollup's rows of one period
    length. The values are the rollup tables' suffixes (`storage/rollups.py: GRAINS`), so a
    grain indexes the storage layer's tables and periods as it is."""

    RAW = "raw"
    HOUR = "h"
    DAY = "d"
    WEEK = "w"  # from Monday 00:00 UTC


ROLLUP_GRAINS = (Grain.HOUR, Grain.DAY, Grain.WEEK)
"""Finest first."""


@dataclass(frozen=True)
class Piece:
    grain: Grain
    start: datetime
    end: datetime

    def describe(self) -> dict[str, str]:
        return {
            "grain": self.grain.value,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
        }


@dataclass
class Plan:
    group: str
    rollup: Rollup | None
    pieces: list[Piece]
    reason: str
    sql: list[str] = field(default_factory=list)
    histogram: bool = False
    exact: bool = False
    """Percentiles computed exactly from the events' values (forced raw path), not from
    sketch buckets."""

    @property
    def percentile_error(self) -> float | None:
        """The bound on a percentile's relative error (None: the group has none)."""
        if not self.histogram:
            return None
        return 0.0 if self.exact else PERCENTILE_RELATIVE_ERROR

    @property
    def source(self) -> str:
        if self.rollup is None:
            return "raw"
        return f"{'histogram' if self.rollup.histogram else 'rollup'}:{self.rollup.name}"

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "group": self.group,
            "source": self.source,
            "reason": self.reason,
            "pieces": [p.describe() for p in self.pieces],
            "sql": self.sql,
        }
        if self.histogram:
            out["percentiles"] = (
                "exact: linear interpolation between the closest ranks of the events' values"
                if self.exact
                else "DDSketch estimate of the interpolated percentile, within 1% relative "
                "error of the exact value (values at or below 1e-6 ms read as 0)"
            )
            out["percentile_relative_error"] = self.percentile_error
        return out


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


def covering_rollup(
    needed: set[str], histogram: bool, dialect: Dialect | None = None
) -> Rollup | None:
    """The first rollup (smallest first) keeping every column of `needed`, among those kept
    on `dialect` (None: on any database)."""
    for rollup in HISTOGRAM_ROLLUPS if histogram else ROLLUPS:
        if dialect is not None and not rollup.kept_on(dialect):
            continue
        dims = set(rollup.dims)
        if TAG in dims and TAG not in needed:
            continue  # the tag rollup counts an event once per tag
        if needed <= dims:
            return rollup
    return None


def uncovered_reason(needed: set[str], histogram: bool) -> str:
    """Why no rollup answers a group needing `needed`: the columns outside the coverage rule
    (`rollups.LOW_CARDINALITY`) and, for each, the rollups that keep it and what they lack."""
    kind = "histogram rollup" if histogram else "rollup"
    reason = f"no {kind} keeps {', '.join(sorted(needed))}"
    outside = sorted(needed - set(LOW_CARDINALITY))
    if not outside:  # cannot happen while base keeps every low-cardinality column
        return reason
    notes = []
    for column in outside:
        keeping = [
            f"{r.name} lacks {', '.join(sorted(needed - set(r.dims)))}"
            for r in (HISTOGRAM_ROLLUPS if histogram else ROLLUPS)
            if column in r.dims and (TAG not in r.dims or TAG in needed)
        ]
        notes.append(
            f"{column} is not low-cardinality"
            + (f" ({'; '.join(keeping)})" if keeping else f" and no {kind} keeps it")
        )
    return f"{reason}: {'; '.join(notes)}"


def _aligned(instants: list[datetime], grain: Grain) -> bool:
    return all(grain_start(grain, int(i.timestamp())) == i.timestamp() for i in instants)


def grains_allowed(bucketing: Bucketing, dimensions: tuple[DimensionRef, ...]) -> tuple[Grain, ...]:
    """The rollup grains (finest first) whose rows never straddle a bucket boundary and keep
    what the dimensions need."""
    if bucketing.granularity is Granularity.MINUTE:
        return ()
    time_dims = {r.dimension for r in dimensions} & TIME_DIMENSIONS
    offsets = [offset for _, offset in bucketing.transitions]
    boundaries = bucketing.boundaries()
    if not _aligned(boundaries, Grain.HOUR) or (time_dims and any(o % 3600 for o in offsets)):
        return ()
    if (
        bucketing.granularity is Granularity.HOUR
        or not _aligned(boundaries, Grain.DAY)
        or Dimension.HOUR_OF_DAY in time_dims
        or (Dimension.DAY_OF_WEEK in time_dims and any(offsets))
    ):
        return ROLLUP_GRAINS[:1]
    if not _aligned(boundaries, Grain.WEEK) or time_dims:
        return ROLLUP_GRAINS[:2]
    return ROLLUP_GRAINS


def _ceil(value: datetime, grain: Grain) -> datetime:
    ts = value.timestamp()
    start = grain_start(grain, int(ts // 1))
    if start < ts:
        start = grain_start(grain, start + GRAINS[grain])
    return datetime.fromtimestamp(start, UTC)


def _floor(value: datetime, grain: Grain) -> datetime:
    return datetime.fromtimestamp(grain_start(grain, int(value.timestamp() // 1)), UTC)


def split_window(start: datetime, end: datetime, grains: tuple[Grain, ...]) -> list[Piece]:
    """Raw edges, then whole periods of each grain in turn (finest first) covering
    [start, end) exactly once: the coarsest grain that fits takes the middle, each finer one
    the ragged edges around it."""
    left: list[Piece] = []
    right: list[Piece] = []
    lo, hi, edge = start, end, Grain.RAW
    for grain in grains:
        a, b = _ceil(lo, grain), _floor(hi, grain)
        if a >= b:
            break
        if lo < a:
            left.append(Piece(edge, lo, a))
        if b < hi:
            right.insert(0, Piece(edge, b, hi))
        lo, hi, edge = a, b, grain
    return [*left, Piece(edge, lo, hi), *right]


def plan_group(
    group: str,
    bucketing: Bucketing,
    dimensions: tuple[DimensionRef, ...],
    spec: EventFilterSpec,
    histogram: bool = False,
    distinct: str | None = None,
    force_raw: bool = False,
    quiet_until: datetime | None = None,
    dialect: Dialect | None = None,
) -> Plan:
    """`quiet_until`: no event lies between the window's end and this instant (the end of
    its hour), so whole hour rows may answer the window's last, partial hour. `dialect`: the
    database asked, for the rollups kept there only (None: every rollup)."""
    start, end = bucketing.start, bucketing.end
    raw = [Piece(Grain.RAW, start, end)]
    if force_raw:
        return Plan(group, None, raw, "raw path forced", histogram=histogram, exact=histogram)
    needed, raw_reason = needed_columns(dimensions, spec, distinct)
    if raw_reason:
        return Plan(group, None, raw, raw_reason, histogram=histogram)
    rollup = covering_rollup(needed, histogram, dialect)
    if rollup is None:
        return Plan(group, None, raw, uncovered_reason(needed, histogram), histogram=histogram)
    grains = tuple(g for g in grains_allowed(bucketing, dimensions) if g in rollup.grains)
    reason = (
        "smallest covering rollup; raw events only at the window's edges"
        if grains
        else "buckets not on whole UTC hours: raw events throughout"
    )
    if grains and quiet_until is not None and quiet_until > end:
        end = quiet_until
        reason += "; nothing after the window's end in its last hour, read whole"
    return Plan(group, rollup, split_window(start, end, grains), reason, histogram=histogram)
