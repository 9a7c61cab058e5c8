"""The analytics questions of the API, each a MetricsQuery (or two) through `run_query`:
overview, time series, breakdowns, hourly distribution, errors and custom queries."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from tallyql.engine.query.buckets import Bucketing, Granularity
from tallyql.engine.query.cost_meter import CostMeter
from tallyql.engine.query.executor import Key, MetricsQuery, MetricsResult, run_query
from tallyql.engine.query.filters import NO_FILTER, EventFilterSpec
from tallyql.engine.query.planner import Plan
from tallyql.engine.query.registry import (
    DIMENSIONS,
    METRICS,
    Dimension,
    DimensionRef,
    Metric,
    other_key,
)
from tallyql.engine.query.scope import Scope
from tallyql.engine.query.timerange import TimeWindow
from tallyql.storage.cursors import CursorError, decode_cursor, encode_cursor
from tallyql.storage.database import Database

MAX_BREAKDOWN_PAGE = 100
MAX_CUSTOM_ROWS = 10_000
DEFAULT_CUSTOM_ROWS = 100


class QueryError(ValueError):
    """A question the engine cannot answer as asked (BAD_USER_INPUT)."""


@dataclass
class Asker:
    """Who asks and how: scope, window, filter, and the plans collected for `explain`."""

    db: Database
    scope: Scope
    window: TimeWindow
    filter: EventFilterSpec = NO_FILTER
    force_raw: bool = False
    explain: bool = False
    plans: list[dict[str, Any]] = field(default_factory=list)
    meter: CostMeter | None = None
    """Pays for each question from its plans before it runs (None: not metered)."""

    def for_window(self, window: TimeWindow) -> Asker:
        return replace(self, window=window, plans=self.plans)

    async def run(
        self,
        metrics: tuple[Metric, ...],
        dimensions: tuple[DimensionRef, ...] = (),
        granularity: Granularity | None = None,
        extra_filter: EventFilterSpec | None = None,
        note: str | None = None,
    ) -> MetricsResult:
        """`note`: what the answer is used for, shown by explain."""
        query = MetricsQuery(
            scope=self.scope,
            metrics=metrics,
            window=self.window,
            dimensions=dimensions,
            filter=extra_filter or self.filter,
            granularity=granularity,
            force_raw=self.force_raw,
        )
        result = await run_query(self.db, query, explain=self.explain, meter=self.meter)
        if self.explain:
            self.plans.extend(_describe(p, query, note) for p in result.plans)
        return result


def _describe(plan: Plan, query: MetricsQuery, note: str | None) -> dict[str, Any]:
    """A plan for explain, with the event kinds its question covers: latency metrics over
    several kinds mix them."""
    described = {
        "metrics": [m.value for m in query.metrics],
        "dimensions": [d.dimension.value for d in query.dimensions],
        "kinds": list(query.filter.kinds) or "all",
        **plan.describe(),
    }
    if note:
        described["note"] = note
    return described


# ---------------------------------------------------------------- overview

OVERVIEW_FIELDS: dict[str, Metric] = {
    "total_requests": Metric.REQUESTS,
    "success_rate": Metric.SUCCESS_RATE,
    "error_rate": Metric.ERROR_RATE,
    "blocked_requests": Metric.BLOCKED,
    "avg_latency_ms": Metric.AVG_LATENCY_MS,
    "p50_latency_ms": Metric.P50_LATENCY_MS,
    "p95_latency_ms": Metric.P95_LATENCY_MS,
    "p99_latency_ms": Metric.P99_LATENCY_MS,
    "avg_ttft_ms": Metric.AVG_TTFT_MS,
    "input_tokens": Metric.INPUT_TOKENS,
    "output_tokens": Metric.OUTPUT_TOKENS,
    "cache_read_tokens": Metric.CACHE_READ_TOKENS,
    "cache_write_tokens": Metric.CACHE_WRITE_TOKENS,
    "reasoning_tokens": Metric.REASONING_TOKENS,
    "total_tokens": Metric.TOTAL_TOKENS,
    "cost_usd": Metric.COST_USD,
    "unique_callers": Metric.UNIQUE_CALLERS,
    "active_users": Metric.UNIQUE_USERS,
    "active_agents": Metric.UNIQUE_AGENTS,
    "active_tools": Metric.UNIQUE_TOOLS,
    "active_gateways": Metric.UNIQUE_GATEWAYS,
    "models_used": Metric.UNIQUE_MODELS,
}


LATENCY_FIELDS = frozenset(
    {"avg_latency_ms", "p50_latency_ms", "p95_latency_ms", "p99_latency_ms", "avg_ttft_ms"}
)
"""Overview figures that time calls: they cover one kind of event, LLM calls, unless the
filter names kinds. A blend of model calls, tool calls and minute-long agent runs describes
no kind of event and moves with the mix."""
DEFAULT_LATENCY_KIND = "llm_call"
KIND_ORDER = ("llm_call", "tool_call", "agent_run", "http_request")
KIND_LATENCY_METRICS = (
    Metric.REQUESTS,
    Metric.AVG_LATENCY_MS,
    Metric.P50_LATENCY_MS,
    Metric.P95_LATENCY_MS,
    Metric.P99_LATENCY_MS,
)


@dataclass(frozen=True)
class KindLatency:
    """One kind's events and latency (for agent runs: their durations) in the window."""

    kind: str
    requests: int
    avg_latency_ms: float | None
    p50_latency_ms: float | None
    p95_latency_ms: float | None
    p99_latency_ms: float | None


@dataclass
class OverviewFigures:
    values: dict[str, float | None]
    """Every name of OVERVIEW_FIELDS; None for those not asked for."""
    latency_by_kind: list[KindLatency] | None = None
    """Per kind, when asked for."""


async def overview(
    asker: Asker, names: Collection[str] | None = None, latency_by_kind: bool = False
) -> OverviewFigures:
    """The overview's figures (only `names` of OVERVIEW_FIELDS when given; the rest None).

    The latency and TTFT figures cover LLM calls unless the filter names kinds (then the
    kinds it names). Without named kinds they are read from a query grouped by kind, which
    also answers `latency_by_kind`: at most two queries, run concurrently, both from rollups
    (the kind is a key of the totals rollup and of the kinds histogram)."""
    wanted = {n: m for n, m in OVERVIEW_FIELDS.items() if names is None or n in names}
    kinds_named = bool(asker.filter.kinds)
    plain = {n: m for n, m in wanted.items() if kinds_named or n not in LATENCY_FIELDS}
    timed = {n: m for n, m in wanted.items() if n not in plain}
    by_kind_metrics = (*timed.values(), *(KIND_LATENCY_METRICS if latency_by_kind else ()))
    plain_metrics = tuple(dict.fromkeys(plain.values()))
    kind_metrics = tuple(dict.fromkeys(by_kind_metrics))
    kind_dim = (DimensionRef(Dimension.KIND),)
    whole, per_kind = await asyncio.gather(
        asker.run(plain_metrics) if plain_metrics else _nothing(),
        asker.run(kind_metrics, kind_dim, note=_KIND_NOTE if timed else None)
        if kind_metrics
        else _nothing(),
    )
    values: dict[str, float | None] = dict.fromkeys(OVERVIEW_FIELDS)
    if whole is not None:
        values.update({name: whole.value((0,), metric) for name, metric in plain.items()})
    if per_kind is not None:
        key = (0, DEFAULT_LATENCY_KIND)
        values.update({name: per_kind.value(key, metric) for name, metric in timed.items()})
    rows = None
    if latency_by_kind:
        rows = _kind_latencies(per_kind) if per_kind is not None else []
    return OverviewFigures(values, rows)


_KIND_NOTE = (
    "grouped by kind: the overview's latency and TTFT figures are the llm_call group's (the "
    "filter names no kinds)"
)


async def _nothing() -> None:
    return None


def _kind_latencies(result: MetricsResult) -> list[KindLatency]:
    """One row per kind with events, in KIND_ORDER (other kinds after, by name)."""
    kinds = [key[1] for key in result.group_keys() if key[1]]
    kinds.sort(key=lambda k: (KIND_ORDER.index(k) if k in KIND_ORDER else len(KIND_ORDER), k))
    rows = []
    for kind in kinds:
        v = result.values[(0, kind)]
        rows.append(
            KindLatency(
                kind=kind,
                requests=int(v[Metric.REQUESTS] or 0),
                avg_latency_ms=v[Metric.AVG_LATENCY_MS],
                p50_latency_ms=v[Metric.P50_LATENCY_MS],
                p95_latency_ms=v[Metric.P95_LATENCY_MS],
                p99_latency_ms=v[Metric.P99_LATENCY_MS],
            )
        )
    return rows


# ---------------------------------------------------------------- breakdown


@dataclass
class BreakdownRow:
    key: Any
    values: list[float | None]


@dataclass
class BreakdownPage:
    rows: list[BreakdownRow]
    total_count: int
    has_next_page: bool
    cursors: list[str]


def _sort_key(value: float | None, key: Any, descending: bool) -> tuple[Any, ...]:
    """Order by value (None last either way), then by key text."""
    missing = value is None or (isinstance(value, float) and math.isnan(value))
    number = 0.0 if missing or value is None else float(value)
    return (missing, -number if descending else number, "" if key is None else str(key))


def _check_dimension(ref: DimensionRef) -> None:
    if ref.dimension is Dimension.METADATA and not ref.metadata_key:
        raise QueryError("the METADATA dimension needs a metadataKey")


async def ranked_groups(
    asker: Asker, ref: DimensionRef, metrics: tuple[Metric, ...], order_by: Metric, descending: bool
) -> list[tuple[Any, dict[Metric, float | None]]]:
    """Every group of a dimension over the window, best first."""
    _check_dimension(ref)
    wanted = metrics if order_by in metrics else (*metrics, order_by)
    result = await asker.run(wanted, (ref,))
    groups = [(key[1], result.values[key]) for key in result.group_keys()]
    groups.sort(key=lambda g: _sort_key(g[1][order_by], g[0], descending))
    return groups


async def breakdown(
    asker: Asker,
    ref: DimensionRef,
    metrics: tuple[Metric, ...],
    order_by: Metric | None,
    descending: bool,
    first: int,
    after: str | None,
) -> BreakdownPage:
    if not metrics:
        raise QueryError("ask for at least one metric")
    if not 1 <= first <= MAX_BREAKDOWN_PAGE:
        raise QueryError(f"first must be between 1 and {MAX_BREAKDOWN_PAGE}")
    order = order_by or metrics[0]
    groups = await ranked_groups(asker, ref, metrics, order, descending)
    start = 0
    if after:
        position = decode_cursor("bd", after, 3)
        marker = (bool(position[0]), float(position[1]), str(position[2]))
        keys = [_sort_key(v[order], k, descending) for k, v in groups]
        start = next((i for i, k in enumerate(keys) if _after(k, marker)), len(groups))
    page = groups[start : start + first]
    cursors = []
    for key, values in page:
        missing, number, text = _sort_key(values[order], key, descending)
        cursors.append(encode_cursor("bd", missing, number, text))
    return BreakdownPage(
        rows=[BreakdownRow(key, [values[m] for m in metrics]) for key, values in page],
        total_count=len(groups),
        has_next_page=start + first < len(groups),
        cursors=cursors,
    )


def _after(key: tuple[Any, ...], marker: tuple[Any, ...]) -> bool:
    try:
        return key > marker
    except TypeError:
        raise CursorError("invalid cursor for this breakdown") from None


# ---------------------------------------------------------------- time series


@dataclass
class Series:
    metric: Metric
    group: Any
    is_other: bool
    values: list[float | None]
    previous: list[float | None] | None = None


@dataclass
class TimeSeriesResult:
    granularity: Granularity
    buckets: list[datetime]
    series: list[Series]


def _column(result: MetricsResult, metric: Metric, group: tuple[Any, ...]) -> list[float | None]:
    return [result.value((i, *group), metric) for i in range(result.bucketing.count)]


def _aligned(values: list[float | None], count: int, metric: Metric) -> list[float | None]:
    empty = 0.0 if METRICS[metric].zero_when_empty else None
    return (values + [empty] * count)[:count]


async def timeseries(
    asker: Asker,
    metrics: tuple[Metric, ...],
    granularity: Granularity,
    group_by: DimensionRef | None,
    limit_groups: int,
    compare_to_previous: bool,
) -> TimeSeriesResult:
    if not metrics:
        raise QueryError("ask for at least one metric")
    if group_by is not None and not 1 <= limit_groups <= 50:
        raise QueryError("limitGroups must be between 1 and 50")
    dims: tuple[DimensionRef, ...] = ()
    groups: list[tuple[Any, bool]] = [((), False)]
    if group_by is not None:
        ranked = await ranked_groups(asker, group_by, metrics[:1], metrics[0], True)
        keep = tuple(k for k, _ in ranked[:limit_groups])
        dims = (replace(group_by, keep=keep),)
        groups = [((k,), False) for k in keep]
        if len(ranked) > limit_groups:
            groups.append(((other_key(group_by.dimension),), True))
    current = await asker.run(metrics, dims, granularity)
    bucketing: Bucketing = current.bucketing
    previous = None
    if compare_to_previous:
        previous = await asker.for_window(asker.window.previous()).run(metrics, dims, granularity)
    series = []
    for group_key, is_other in groups:
        for metric in metrics:
            series.append(
                Series(
                    metric=metric,
                    group=None if is_other or not group_key else group_key[0],
                    is_other=is_other,
                    values=_column(current, metric, group_key),
                    previous=_aligned(_column(previous, metric, group_key), bucketing.count, metric)
                    if previous is not None
                    else None,
                )
            )
    return TimeSeriesResult(bucketing.granularity, list(bucketing.starts), series)


async def hourly_distribution(asker: Asker, metric: Metric) -> list[float | None]:
    result = await asker.run((metric,), (DimensionRef(Dimension.HOUR_OF_DAY),))
    return [result.value((0, hour), metric) for hour in range(24)]


# ---------------------------------------------------------------- errors


@dataclass
class ErrorsSummary:
    total_errors: float
    error_rate: float | None
    by_type: list[tuple[str | None, float]]
    by_model: list[tuple[str | None, str | None, float, float | None]]


async def errors(asker: Asker) -> ErrorsSummary:
    totals = await asker.run((Metric.ERRORS, Metric.ERROR_RATE))
    only_errors = replace(asker.filter, statuses=("error",))
    by_type = await asker.run(
        (Metric.REQUESTS,), (DimensionRef(Dimension.ERROR_TYPE),), extra_filter=only_errors
    )
    by_model = await asker.run(
        (Metric.ERRORS, Metric.ERROR_RATE),
        (DimensionRef(Dimension.MODEL), DimensionRef(Dimension.PROVIDER)),
    )
    types = sorted(
        ((k[1], by_type.values[k][Metric.REQUESTS] or 0.0) for k in by_type.group_keys()),
        key=lambda t: (-t[1], t[0] or ""),
    )
    models = [
        (k[1], k[2], v[Metric.ERRORS] or 0.0, v[Metric.ERROR_RATE])
        for k, v in by_model.values.items()
        if v[Metric.ERRORS]
    ]
    models.sort(key=lambda m: (-m[2], m[0] or "", m[1] or ""))
    return ErrorsSummary(
        total_errors=totals.value((0,), Metric.ERRORS) or 0.0,
        error_rate=totals.value((0,), Metric.ERROR_RATE),
        by_type=types,
        by_model=models,
    )


# ---------------------------------------------------------------- custom queries


@dataclass
class CustomRow:
    bucket: datetime | None
    keys: list[Any]
    values: list[float | None]


@dataclass
class CustomResult:
    rows: list[CustomRow]
    total_rows: int
    truncated: bool


async def custom_query(
    asker: Asker,
    metrics: tuple[Metric, ...],
    dimensions: tuple[DimensionRef, ...],
    granularity: Granularity | None,
    order: list[tuple[Metric, bool]],
    limit: int | None,
) -> CustomResult:
    if not metrics:
        raise QueryError("ask for at least one metric")
    if len(dimensions) > 3:
        raise QueryError("group by at most 3 dimensions")
    for ref in dimensions:
        _check_dimension(ref)
        if DIMENSIONS[ref.dimension].high_cardinality and limit is None:
            raise QueryError(
                f"grouping by {ref.dimension.value} needs an explicit limit (at most "
                f"{MAX_CUSTOM_ROWS})"
            )
    limit = DEFAULT_CUSTOM_ROWS if limit is None else limit
    if not 1 <= limit <= MAX_CUSTOM_ROWS:
        raise QueryError(f"limit must be between 1 and {MAX_CUSTOM_ROWS}")
    wanted = tuple(dict.fromkeys([*metrics, *(m for m, _ in order)]))
    result = await asker.run(wanted, dimensions, granularity)
    keys: list[Key] = result.group_keys()

    def sort_key(key: Key) -> tuple[Any, ...]:
        parts: list[Any] = []
        for metric, descending in order:
            parts.extend(_sort_key(result.values[key][metric], None, descending)[:2])
        parts.append(key[0])
        parts.extend("" if k is None else str(k) for k in key[1:])
        return tuple(parts)

    keys.sort(key=sort_key)
    starts = result.bucketing.starts
    rows = [
        CustomRow(
            bucket=starts[key[0]] if granularity is not None else None,
            keys=list(key[1:]),
            values=[result.values[key][m] for m in metrics],
        )
        for key in keys[:limit]
    ]
    return CustomResult(rows, len(keys), len(keys) > limit)
