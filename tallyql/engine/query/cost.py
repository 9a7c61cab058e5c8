"""What a question costs, in points, from its plans, before any of them runs.

A plan (one statement) costs one point, plus what it reads, plus what it answers, rounded up:
- a raw piece reads RAW_EVENTS_PER_HOUR events for each hour it spans (parts of an hour
  count as parts), times RAW_DIMENSION_FACTOR for each dimension that groups raw events by a
  value of many (sessions, metadata: the sort grows with them); RAW_EVENTS_PER_POINT such
  events cost a point (the database scans them);
- a rollup piece reads one row per period (hour, day or week) for each combination of the
  dimensions' values (the product of their estimated cardinalities), at most one per event
  the period is assumed to hold;
- the answer holds one row per bucket and combination of the dimensions' values (a
  dimension folded into its top groups and "other" has that many), at most one per event
  the window is assumed to hold (and at least one per bucket);
ROWS_PER_POINT rollup or answered rows cost a point (each is merged and finished in Python).
A dimension's cardinality is estimated from its kind (CARDINALITY), not measured: the model
is a bound on the work a question may cause, fixed before it runs and the same for every
workspace, so that a caller can predict it. Costs are whole points, rounded up.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from tallyql.engine.query.planner import Grain, Plan
from tallyql.engine.query.registry import Dimension, DimensionRef

ROWS_PER_POINT = 100
RAW_EVENTS_PER_POINT = 10_000
RAW_EVENTS_PER_HOUR = 2_000
"""Events assumed in an hour of raw events (a busy workspace's hour)."""
HIGH_CARDINALITY = 1_000
"""Values assumed of a dimension of many values (sessions, users, callers, metadata...)."""
LOW_CARDINALITY = 20
"""Values assumed of any other dimension (models, providers, statuses, tools...)."""
CARDINALITY: dict[Dimension, int] = {
    Dimension.HOUR_OF_DAY: 24,
    Dimension.DAY_OF_WEEK: 7,
    Dimension.STATUS: 3,
    Dimension.BYOK: 2,
    Dimension.KIND: 4,
}
RAW_DIMENSION_FACTOR = 2
"""A raw scan grouped by a high-cardinality dimension sorts or hashes that many more rows'
worth of work per event (grouping by sessions is the costly case)."""
MAX_COMBINATIONS = 10_000_000
"""Estimated combinations are capped here (the product of several large dimensions)."""
GRAIN_SECONDS = {Grain.HOUR: 3_600, Grain.DAY: 86_400, Grain.WEEK: 604_800}


def cardinality(ref: DimensionRef) -> int:
    if ref.keep is not None:  # its top groups and "other"
        return len(ref.keep) + 1
    if ref.dimension in CARDINALITY:
        return CARDINALITY[ref.dimension]
    if ref.definition.high_cardinality or ref.dimension in (
        Dimension.SESSION,
        Dimension.METADATA,
    ):
        return HIGH_CARDINALITY
    return LOW_CARDINALITY


def combinations(dimensions: Sequence[DimensionRef]) -> int:
    product = 1
    for ref in dimensions:
        product = min(MAX_COMBINATIONS, product * cardinality(ref))
    return product


def plan_cost(plan: Plan, dimensions: Sequence[DimensionRef], buckets: int) -> int:
    """The points of one plan: its statement, the rows its pieces read, the rows it answers."""
    combos = combinations(dimensions)
    raw_factor = RAW_DIMENSION_FACTOR ** sum(
        1 for ref in dimensions if cardinality(ref) >= HIGH_CARDINALITY
    )
    raw_events = 0.0
    window_events = 0.0  # no more rows can exist than events: a bound on every row count
    rows = 0.0
    for piece in plan.pieces:
        seconds = (piece.end - piece.start).total_seconds()
        events_in = seconds / 3600 * RAW_EVENTS_PER_HOUR
        window_events += events_in
        if piece.grain is Grain.RAW:
            raw_events += events_in * raw_factor
        else:
            periods = math.ceil(seconds / GRAIN_SECONDS[piece.grain])
            per_period = GRAIN_SECONDS[piece.grain] / 3600 * RAW_EVENTS_PER_HOUR
            rows += periods * min(combos, per_period)
    rows += min(buckets * combos, max(window_events, buckets))
    return 1 + math.ceil(raw_events / RAW_EVENTS_PER_POINT + rows / ROWS_PER_POINT)


def query_cost(plans: Sequence[Plan], dimensions: Sequence[DimensionRef], buckets: int) -> int:
    return sum(plan_cost(plan, dimensions, buckets) for plan in plans)


FIELD_POINTS = 1
"""Every field at the root of an operation (each alias counts) costs this before it runs."""
PAGE_ITEMS_PER_POINT = 10
"""A root field asking for a page of `first` items costs first / 10 points more."""


def field_cost(page_size: int | None) -> int:
    return FIELD_POINTS + (math.ceil(page_size / PAGE_ITEMS_PER_POINT) if page_size else 0)


SESSIONS_PER_DAY = 500
"""Sessions assumed to end on a day that holds any (sessionStats gathers every one of the
window's sessions' measures in Python to pick exact quantiles)."""


def session_stats_cost(days: int) -> int:
    """sessionStats over `days` days that may hold sessions (the stamped ones, or every day
    of the window when a filter makes it scan)."""
    return 1 + math.ceil(days * SESSIONS_PER_DAY / ROWS_PER_POINT)


SESSIONS_PER_HOUR = SESSIONS_PER_DAY / 24
AUDIT_EVENTS_PER_HOUR = RAW_EVENTS_PER_HOUR
"""Audit events assumed in an hour (as many as raw events: every blocked call records one)."""


def export_cost(hours: float, rows_per_hour: float) -> int:
    """A streamed export of a window's stored rows (requests, sessions or audit events): a
    statement, the rows the database reads (RAW_EVENTS_PER_POINT a point) and the rows
    answered, each encoded in Python (ROWS_PER_POINT a point), `rows_per_hour` assumed."""
    rows = max(0.0, hours) * rows_per_hour
    return 1 + math.ceil(rows / RAW_EVENTS_PER_POINT + rows / ROWS_PER_POINT)
