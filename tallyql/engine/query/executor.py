"""Runs a MetricsQuery in five stages, each a function below:

  plan_query     a plan per measure group (sums, each histogram, each distinct column), paid
                 for before anything runs
  compile_query  a statement per plan, kept by shape, with the values that move bound
  fetch          every statement at once
  merge          rows by key (bucket, dimension values): measures, distinct counts, quantiles
  finish         each metric from its key's measures (the registry's finish)

Every analytics field of the API goes through `run_query`; it is the one place that reads
events and rollups for aggregates.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, column, literal, select, table
from sqlalchemy.exc import ProgrammingError

from tallyql import sketch
from tallyql.clock import clock
from tallyql.engine.query.buckets import Bucketing, Granularity, make_bucketing, single_bucket
from tallyql.engine.query.compiler import GroupKind, GroupSpec
from tallyql.engine.query.cost import query_cost
from tallyql.engine.query.cost_meter import CostMeter
from tallyql.engine.query.filters import NO_FILTER, EventFilterSpec
from tallyql.engine.query.planner import Plan, plan_group
from tallyql.engine.query.registry import METRICS, DimensionRef, Metric
from tallyql.engine.query.scope import Scope
from tallyql.engine.query.statement_cache import STATEMENTS
from tallyql.engine.query.timerange import TimeWindow
from tallyql.histogram import Accumulator
from tallyql.storage.database import Database
from tallyql.storage.ingest.partitions import partition_name
from tallyql.storage.tables import events

Key = tuple[Any, ...]  # (bucket index, dimension values...)


@dataclass(frozen=True)
class MetricsQuery:
    scope: Scope
    metrics: tuple[Metric, ...]
    window: TimeWindow
    dimensions: tuple[DimensionRef, ...] = ()
    filter: EventFilterSpec = NO_FILTER
    granularity: Granularity | None = None
    """None: one bucket for the whole window."""
    force_raw: bool = False


@dataclass
class MetricsResult:
    bucketing: Bucketing
    values: dict[Key, dict[Metric, float | None]]
    plans: list[Plan] = field(default_factory=list)

    def group_keys(self) -> list[Key]:
        return list(self.values)

    def value(self, key: Key, metric: Metric) -> float | None:
        row = self.values.get(key)
        if row is None:
            return 0 if METRICS[metric].zero_when_empty else None
        return row[metric]


def _number(value: Any) -> float | int | None:
    if value is None:
        return None
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def measure_groups(metrics: Sequence[Metric]) -> dict[str, GroupSpec]:
    """The statements a set of metrics needs, by group name."""
    measures: list[str] = []
    groups: dict[str, GroupSpec] = {}
    for metric in metrics:
        definition = METRICS[metric]
        for m in definition.measures:
            if m not in measures:
                measures.append(m)
        if definition.histogram:
            name = f"histogram:{definition.histogram}"
            known = groups[name].quantiles if name in groups else ()
            groups[name] = GroupSpec(
                GroupKind.HISTOGRAM,
                histogram=definition.histogram,
                quantiles=(*known, definition.quantile or 0.5),
            )
        if definition.distinct:
            groups[f"distinct:{definition.distinct}"] = GroupSpec(
                GroupKind.DISTINCT, distinct=definition.distinct
            )
    if measures:
        groups = {"measures": GroupSpec(GroupKind.MEASURES, measures=tuple(measures)), **groups}
    return groups


UNDEFINED_TABLE = "42P01"  # PostgreSQL SQLSTATE


async def quiet_until(db: Database, scope: Scope, end: datetime) -> datetime | None:
    """The end of the hour holding `end` when no event of the scope lies between the two, so
    that its hour rows count only events inside the window (a window ending now is the usual
    case: its raw last hour is the costliest edge of a dashboard query); else None. One
    index probe. (An event committed between the probe and the query with a timestamp after
    the window's end, within the same hour, would be counted: a few milliseconds of traffic
    stamped after a window that ends now.)"""
    end = end.astimezone(UTC)
    hour = end.replace(minute=0, second=0, microsecond=0)
    if hour == end or end < clock.now() - timedelta(hours=1):
        return None  # whole already, or long past: its hour has had time to fill, likely busy
    ceil = hour + timedelta(hours=1)
    source: Any = events
    if db.dialect.day_partitions:  # planning the parent costs 4 ms and more
        source = table(partition_name("events", hour.date()), column("ts"), column("workspace_id"))
    conditions = [source.c.ts >= end, source.c.ts < ceil]
    if scope.workspace_ids is not None:
        conditions.append(source.c.workspace_id.in_(scope.workspace_ids))
    probe = select(literal(1)).select_from(source).where(*conditions).limit(1)
    try:
        async with db.read() as conn:
            found = (await conn.execute(probe)).first()
    except ProgrammingError as exc:
        if getattr(exc.orig, "sqlstate", None) == UNDEFINED_TABLE:
            return ceil  # no partition for that day: no events either
        raise
    return None if found is not None else ceil


async def run_query(
    db: Database, query: MetricsQuery, explain: bool = False, meter: CostMeter | None = None
) -> MetricsResult:
    """The query's answer in five stages: plan (paid for with `meter`, engine/query/cost.py,
    before any statement runs), compile, fetch, merge, finish."""
    bucketing = (
        single_bucket(query.window)
        if query.granularity is None
        else make_bucketing(query.window, query.granularity)
    )
    groups = measure_groups(query.metrics)
    plans = await plan_query(db, query, bucketing, groups, meter)
    statements = compile_query(db, query, bucketing, groups, plans, explain)
    results = await fetch(db, statements)
    measures, quantiles = merge(groups, plans, results, len(query.dimensions))
    return MetricsResult(bucketing, finish(query.metrics, measures, quantiles), plans)


async def plan_query(
    db: Database,
    query: MetricsQuery,
    bucketing: Bucketing,
    groups: dict[str, GroupSpec],
    meter: CostMeter | None,
) -> list[Plan]:
    """Stage 1: a plan per measure group (engine/query/planner.py), charged to `meter`; then,
    when nothing lies between the window's end and the end of its hour, plans that read that
    hour whole (`quiet_until`)."""

    def plan_all(quiet: datetime | None) -> list[Plan]:
        return [
            plan_group(
                name,
                bucketing,
                query.dimensions,
                query.filter,
                histogram=group.kind is GroupKind.HISTOGRAM,
                distinct=group.distinct,
                force_raw=query.force_raw,
                quiet_until=quiet,
                dialect=db.dialect,
            )
            for name, group in groups.items()
        ]

    plans = plan_all(None)
    if meter is not None:  # paid before any statement, even the probe (what a quiet last
        # hour saves is less than a point: the price is that of the plans without it)
        by = " x ".join(d.dimension.value for d in query.dimensions) or "no dimension"
        what = f"{len(query.metrics)} metrics by {by} in {bucketing.count} buckets"
        meter.charge(query_cost(plans, query.dimensions, bucketing.count), what)
    quiet = None if query.force_raw else await quiet_until(db, query.scope, bucketing.end)
    return plans if quiet is None else plan_all(quiet)


Statement = tuple[Select[Any], dict[str, Any]]
"""A statement and the values it is executed with."""


def compile_query(
    db: Database,
    query: MetricsQuery,
    bucketing: Bucketing,
    groups: dict[str, GroupSpec],
    plans: list[Plan],
    explain: bool,
) -> list[Statement]:
    """Stage 2: a statement per plan (engine/query/compiler.py), kept by shape
    (engine/query/statement_cache.py); explain records its SQL on the plan."""
    out = []
    for plan, group in zip(plans, groups.values(), strict=True):
        statement, params = STATEMENTS.statement(
            plan, group, bucketing, query.dimensions, query.filter, query.scope, db.dialect
        )
        if explain:
            plan.sql.append(str(statement.compile(db.reader.sync_engine)))
        out.append((statement, params))
    return out


async def fetch(db: Database, statements: list[Statement]) -> list[list[Sequence[Any]]]:
    """Stage 3: every statement at once, each on a read connection of its own."""
    return list(await asyncio.gather(*(_fetch(db, s) for s in statements)))


async def _fetch(db: Database, statement: Statement) -> list[Sequence[Any]]:
    select_, params = statement
    async with db.read() as conn:
        return [tuple(r) for r in (await conn.execute(select_, params)).all()]


def merge(
    groups: dict[str, GroupSpec],
    plans: list[Plan],
    results: list[list[Sequence[Any]]],
    n_dims: int,
) -> tuple[dict[Key, dict[str, Any]], dict[str, dict[Key, dict[float, float]]]]:
    """Stage 4: the groups' rows by key (bucket index, dimension values...): each key's base
    measures and distinct counts, and each histogram's quantiles (sketch buckets and blobs
    merged here, or exact values picked from ranks)."""
    raw_values: dict[Key, dict[str, Any]] = defaultdict(dict)
    quantiles: dict[str, dict[Key, dict[float, float]]] = defaultdict(lambda: defaultdict(dict))
    histograms: dict[Key, Accumulator] = {}
    for (name, group), rows, plan in zip(groups.items(), results, plans, strict=True):
        if group.kind is GroupKind.HISTOGRAM and plan.exact:
            for key, found in _exact_quantiles(rows, n_dims, group.quantiles).items():
                quantiles[name][key] = found
                raw_values.setdefault(key, {})
            continue
        for row in rows:
            key = tuple(_key_value(v) for v in row[: 1 + n_dims])
            if group.kind is GroupKind.MEASURES:
                measured = raw_values[key]
                for m, v in zip(group.measures, row[1 + n_dims :], strict=True):
                    measured[m] = _number(v)
            elif group.kind is GroupKind.HISTOGRAM:  # (keys..., bucket, count, blob)
                accumulator = histograms.setdefault(key, Accumulator())
                blob = row[3 + n_dims]
                if blob is not None:
                    accumulator.add_blob(bytes(blob))
                else:
                    accumulator.add(int(row[1 + n_dims]), int(row[2 + n_dims]))
            else:
                raw_values[key][name] = int(row[1 + n_dims])
        if group.kind is GroupKind.HISTOGRAM:
            for key, accumulator in histograms.items():
                found = accumulator.quantiles(group.quantiles)
                if found:
                    quantiles[name][key] = found
                    raw_values.setdefault(key, {})
            histograms.clear()
    return raw_values, quantiles


def _exact_quantiles(
    rows: Sequence[Sequence[Any]], n_dims: int, qs: Sequence[float]
) -> dict[Key, dict[float, float]]:
    """Each group's percentiles from the rows of `compiler.exact_percentiles` (keys..., n, r,
    v): interpolated between the values of the two closest ranks."""
    counts: dict[Key, int] = {}
    ranked: dict[Key, dict[int, float]] = defaultdict(dict)
    for row in rows:
        key = tuple(_key_value(v) for v in row[: 1 + n_dims])
        n, r, v = row[1 + n_dims :]
        counts[key] = int(n)
        ranked[key][int(r)] = float(v)
    out: dict[Key, dict[float, float]] = {}
    for key, n in counts.items():
        found = {}
        for q in qs:
            low, high, t = sketch.neighbour_ranks(q, n)
            found[q] = sketch.interpolate(ranked[key][low], ranked[key][high], t)
        out[key] = found
    return out


def _key_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value)
    return value


def finish(
    metrics: Sequence[Metric],
    measures: dict[Key, dict[str, Any]],
    quantiles: dict[str, dict[Key, dict[float, float]]],
) -> dict[Key, dict[Metric, float | None]]:
    """Stage 5: each key's metrics from its base measures (the registry's finish), distinct
    counts and quantiles."""
    return {
        key: {m: _finish_metric(m, found, quantiles, key) for m in metrics}
        for key, found in measures.items()
    }


def _finish_metric(
    metric: Metric,
    measures: dict[str, Any],
    quantiles: dict[str, dict[Key, dict[float, float]]],
    key: Key,
) -> float | None:
    definition = METRICS[metric]
    if definition.histogram:
        found = quantiles.get(f"histogram:{definition.histogram}", {}).get(key, {})
        return found.get(definition.quantile or 0.5)
    if definition.distinct:
        return int(measures.get(f"distinct:{definition.distinct}", 0))
    assert definition.compute is not None
    if all(measures.get(m) is None for m in definition.measures):
        return 0 if definition.zero_when_empty else None
    # Any: latency_max stays None when absent (no maximum of nothing), the others read 0
    filled: dict[str, Any] = {
        m: (measures.get(m) if m == "latency_max" else measures.get(m) or 0)
        for m in definition.measures
    }
    value = definition.compute(filled)
    if value is None or isinstance(value, int):  # counts stay exact integers
        return value
    return float(value)
