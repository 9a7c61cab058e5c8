"""Core analytics fields: overview, timeseries, breakdown, hourlyDistribution, errors, metrics."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeAlias

import strawberry

from tallyql.engine import analytics as engine
from tallyql.engine.query.buckets import Granularity as EngineGranularity
from tallyql.engine.query.registry import DIMENSIONS, METRICS, OVERLAPPING_DIMENSIONS, DimensionRef
from tallyql.engine.query.registry import Dimension as EngineDimension
from tallyql.engine.query.registry import Metric as EngineMetric
from tallyql.schema.analytics_overview import Overview, resolve_overview
from tallyql.schema.base.common import (
    AfterArg,
    DescendingArg,
    EventFilter,
    FilterArg,
    FirstArg,
    RangeArg,
    TimeRangeInput,
)
from tallyql.schema.base.context import TallyInfo
from tallyql.schema.base.described import describe_values
from tallyql.schema.base.scalars import Long, as_count

if TYPE_CHECKING:
    from tallyql.schema.agents import AgentStats
    from tallyql.schema.directory import User
    from tallyql.schema.sessions import Session

Metric: TypeAlias = EngineMetric  # strawberry.enum below marks the class in place
strawberry.enum(
    Metric,
    name="Metric",
    description="A measure over the events a query selects. Counts (REQUESTS, ERRORS, tokens, "
    "UNIQUE_*) are whole numbers; rates are fractions 0 to 1; latencies and TTFT in ms; "
    "COST_USD in USD; bytes are sums. Percentiles (P50/P95/P99_LATENCY_MS, P95_TTFT_MS) are "
    "linear interpolation between the closest ranks (PostgreSQL's percentile_cont): estimated "
    "within 1 % relative error from DDSketch buckets, exact when the request sends "
    "X-Tallyql-Plan: raw.",
)
describe_values(Metric, {m.name: METRICS[m].description for m in EngineMetric})
Dimension: TypeAlias = EngineDimension  # strawberry.enum below marks the class in place
strawberry.enum(Dimension, name="Dimension", description="What to group events by.")
describe_values(Dimension, {d.name: DIMENSIONS[d].description for d in EngineDimension})
Granularity: TypeAlias = EngineGranularity  # strawberry.enum below marks the class in place
strawberry.enum(
    Granularity,
    name="Granularity",
    description="Time bucket size; AUTO is HOUR up to two days, else DAY. Weeks start Monday.",
)
describe_values(
    Granularity,
    {
        "AUTO": "HOUR for windows up to two days, else DAY.",
        "MINUTE": "One-minute buckets (answered from raw events).",
        "HOUR": "One-hour buckets.",
        "DAY": "Local calendar days in the range's time zone.",
        "WEEK": "Local weeks starting Monday 00:00.",
        "MONTH": "Local calendar months.",
        "QUARTER": "Local calendar quarters.",
        "YEAR": "Local calendar years.",
    },
)

VALUES_NOTE = (
    " Counts and byte sums appear as whole numbers (exact up to 2^53), rates as fractions 0 to "
    "1, latencies in ms, costs in USD; null where a metric has no value (a ratio or latency "
    "without events)."
)


def _key_text(value: Any) -> str | None:
    """Group keys as strings (booleans as true/false, numbers as digits), null when absent."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@strawberry.type(description="One line of a chart: a metric, optionally for one group.")
class Series:
    metric: Metric = strawberry.field(description="The metric every value of this series measures.")
    group: str | None = strawberry.field(description="The group's key; null when not grouped.")
    is_other: bool = strawberry.field(description="All groups beyond the top ones.")
    values: list[float | None] = strawberry.field(
        description="The metric per bucket, in the order of TimeSeries.buckets." + VALUES_NOTE
    )
    previous: list[float | None] | None = strawberry.field(
        description="The metric over the previous period of the same length, bucket by bucket "
        "(with compareToPrevious), in the same units as values; null without it."
    )


@strawberry.type(description="Columnar time series: one bucket list, a value list per series.")
class TimeSeries:
    granularity: Granularity = strawberry.field(description="The bucket size used (AUTO resolved).")
    buckets: list[datetime] = strawberry.field(
        description="Bucket starts, in order; each series has one value per bucket."
    )
    series: list[Series] = strawberry.field(
        description="One series per metric (and per group with groupBy)."
    )


@strawberry.type(description="One group of a breakdown.")
class BreakdownNode:
    key: str | None = strawberry.field(description="The group's key; null when absent.")
    values: list[float | None] = strawberry.field(
        description="One value per metric, in the order of BreakdownConnection.metrics."
        + VALUES_NOTE
    )
    _dimension: strawberry.Private[EngineDimension | None] = None
    _asker: strawberry.Private[Any] = None

    @strawberry.field(description="USER breakdowns: the directory's user of the key.")
    async def user(
        self, info: TallyInfo
    ) -> Annotated[User, strawberry.lazy("tallyql.schema.directory")] | None:
        from tallyql.schema.analytics_nested import breakdown_user

        return await breakdown_user(info, self._dimension, self._asker, self.key)

    @strawberry.field(description="AGENT breakdowns: the agent over the same range and filter.")
    async def agent(
        self, info: TallyInfo
    ) -> Annotated[AgentStats, strawberry.lazy("tallyql.schema.agents")] | None:
        from tallyql.schema.analytics_nested import breakdown_agent

        return await breakdown_agent(info, self._dimension, self._asker, self.key)

    @strawberry.field(description="SESSION breakdowns: the session of the key.")
    async def session(
        self, info: TallyInfo
    ) -> Annotated[Session, strawberry.lazy("tallyql.schema.sessions")] | None:
        from tallyql.schema.analytics_nested import breakdown_session

        return await breakdown_session(info, self._dimension, self._asker, self.key)


@strawberry.type(description="A group with its cursor.")
class BreakdownEdge:
    cursor: str = strawberry.field(description="Opaque; pass as `after` for the next page.")
    node: BreakdownNode = strawberry.field(description="The group.")


@strawberry.type(description="Groups of a dimension, best first, 10 per page by default.")
class BreakdownConnection:
    total_count: int = strawberry.field(description="Groups in the whole breakdown (count).")
    metrics: list[Metric] = strawberry.field(
        description="The metrics asked for: labels of every node's `values`, in order."
    )
    edges: list[BreakdownEdge] = strawberry.field(description="This page's groups.")
    has_next_page: bool = strawberry.field(description="More groups follow this page.")
    end_cursor: str | None = strawberry.field(description="The last group's cursor.")
    rows_overlap: bool = strawberry.field(
        description="true when one event can count in several groups (GROUP: a user in "
        "several groups; TAG: an event with several tags), so that counts and costs of the "
        "groups can add up to more than the total; false when each event counts in one group "
        "(DEPARTMENT, USER, MODEL, ...)."
    )

    @strawberry.field(description="This page's groups, without cursors.")
    def nodes(self) -> list[BreakdownNode]:
        return [e.node for e in self.edges]


@strawberry.type(description="Errors of one error type.")
class ErrorTypeCount:
    type: str | None = strawberry.field(description="The error type; null when not reported.")
    count: Long = strawberry.field(description="Events with status error of this type.")


@strawberry.type(description="Errors of one model.")
class ModelErrors:
    model: str | None = strawberry.field(description="The model; null for events without one.")
    provider: str | None = strawberry.field(description="The model's provider.")
    errors: Long = strawberry.field(description="Events with status error (count).")
    error_rate: float | None = strawberry.field(description="Errors / events of the model, 0 to 1.")


@strawberry.type(description="Errors of the range and filter.")
class ErrorsSummary:
    total_errors: Long = strawberry.field(description="Events with status error (count).")
    error_rate: float | None = strawberry.field(
        description="Errors / events, 0 to 1; null without events."
    )
    by_type: list[ErrorTypeCount] = strawberry.field(description="Errors per error type.")
    by_model: list[ModelErrors] = strawberry.field(description="Errors per model.")


@strawberry.input(description="A dimension of a custom query.")
class DimensionInput:
    dimension: Dimension = strawberry.field(description="What to group by.")
    metadata_key: str | None = strawberry.field(
        default=None, description="The metadata key, for the METADATA dimension."
    )


@strawberry.input(description="Order rows of a custom query by a metric.")
class MetricOrderInput:
    metric: Metric = strawberry.field(
        description="The metric to order by (one of the query's metrics or another)."
    )
    descending: bool = strawberry.field(default=True, description="Largest first.")


@strawberry.input(description="A custom query: metrics grouped by up to 3 dimensions and time.")
class MetricsQueryInput:
    metrics: list[Metric] = strawberry.field(
        description="What to measure; each row's values follow this order. Latency metrics are "
        "over every event selected, so name kinds in the filter to keep them to one kind."
    )
    range: TimeRangeInput = strawberry.field(description="The window and its time zone.")
    dimensions: list[DimensionInput] | None = strawberry.field(
        default=None, description="Up to 3 dimensions to group by; none: one row per bucket."
    )
    filter: EventFilter | None = strawberry.field(
        default=None, description="Which events count; null: all of the workspace."
    )
    granularity: Granularity | None = strawberry.field(
        default=None, description="Time buckets; null: one bucket for the whole range."
    )
    order_by: list[MetricOrderInput] | None = strawberry.field(
        default=None, description="Row order; default: the first metric, largest first."
    )
    limit: int | None = strawberry.field(
        default=None,
        description="Rows to return (default 100, at most 10,000); required for USER, "
        "SESSION, API_KEY, CALLER and METADATA.",
    )


@strawberry.type(description="One row of a custom query: a bucket, group keys and values.")
class MetricsRow:
    bucket: datetime | None = strawberry.field(
        description="The bucket's start; null without granularity."
    )
    keys: list[str | None] = strawberry.field(
        description="One key per dimension, in the order of MetricsResult.dimensions."
    )
    values: list[float | None] = strawberry.field(
        description="One value per metric, in the order of MetricsResult.metrics." + VALUES_NOTE
    )


@strawberry.type(description="Rows of a custom query; `columns` holds the same data columnar.")
class MetricsResult:
    metrics: list[Metric] = strawberry.field(
        description="Labels of every row's `values`, in order."
    )
    dimensions: list[Dimension] = strawberry.field(
        description="Labels of every row's `keys`, in order."
    )
    rows: list[MetricsRow] = strawberry.field(description="The rows, in the asked order.")
    total_rows: int = strawberry.field(description="Rows before the limit (count).")
    truncated: bool = strawberry.field(description="True when rows were cut at the limit.")

    @strawberry.field(
        description="Columnar form: buckets, one key list per dimension, one value list per metric."
    )
    def columns(self) -> MetricsColumns:
        return MetricsColumns(
            metrics=self.metrics,
            dimensions=self.dimensions,
            buckets=[r.bucket for r in self.rows],
            keys=[[r.keys[i] for r in self.rows] for i in range(len(self.dimensions))],
            values=[[r.values[i] for r in self.rows] for i in range(len(self.metrics))],
        )


@strawberry.type(description="A custom query's rows as columns (row i is index i of each list).")
class MetricsColumns:
    metrics: list[Metric] = strawberry.field(
        description="Labels of `values`: values[i] holds metrics[i] for every row."
    )
    dimensions: list[Dimension] = strawberry.field(
        description="Labels of `keys`: keys[i] holds dimensions[i] for every row."
    )
    buckets: list[datetime | None] = strawberry.field(
        description="Each row's bucket start; null without granularity."
    )
    keys: list[list[str | None]] = strawberry.field(
        description="One list per dimension, one key per row."
    )
    values: list[list[float | None]] = strawberry.field(
        description="One list per metric, one value per row." + VALUES_NOTE
    )


WorkspaceArg = Annotated[
    strawberry.ID | None,
    strawberry.argument(
        description='Operator admin keys only: another workspace\'s id, or "*" for all of them.'
    ),
]


def _ref(dimension: EngineDimension, metadata_key: str | None) -> DimensionRef:
    return DimensionRef(dimension, metadata_key=metadata_key)


@strawberry.type
class AnalyticsQuery:
    @strawberry.field(description="Headline figures for a window, with the previous period.")
    async def overview(
        self,
        info: TallyInfo,
        range: RangeArg,
        filter: FilterArg = None,
        workspace: WorkspaceArg = None,
    ) -> Overview:
        return await resolve_overview(info, info.context.asker(range, filter, workspace))

    @strawberry.field(
        description="Metrics over time, optionally for the top groups of a dimension."
    )
    async def timeseries(
        self,
        info: TallyInfo,
        metrics: Annotated[
            list[Metric],
            strawberry.argument(
                description="What to measure: one series per metric (and per group). Latency "
                "metrics are over every event selected: name kinds in the filter to "
                "keep them to one kind."
            ),
        ],
        range: RangeArg,
        granularity: Annotated[
            Granularity,
            strawberry.argument(
                description="Bucket size (AUTO: hourly up to two days, else daily)."
            ),
        ] = EngineGranularity.AUTO,
        filter: FilterArg = None,
        group_by: Annotated[
            Dimension | None,
            strawberry.argument(
                description="A dimension whose top groups get a series each, plus an 'other' "
                "series."
            ),
        ] = None,
        metadata_key: Annotated[
            str | None,
            strawberry.argument(description="The metadata key, for groupBy METADATA."),
        ] = None,
        limit_groups: Annotated[
            int,
            strawberry.argument(
                description="How many top groups get their own series (ranked by the first metric)."
            ),
        ] = 10,
        compare_to_previous: Annotated[
            bool,
            strawberry.argument(
                description="Also give each series' values over the previous period of the same "
                "length."
            ),
        ] = False,
        workspace: WorkspaceArg = None,
    ) -> TimeSeries:
        asker = info.context.asker(range, filter, workspace)
        result = await engine.timeseries(
            asker,
            tuple(metrics),
            granularity,
            _ref(group_by, metadata_key) if group_by is not None else None,
            limit_groups,
            compare_to_previous,
        )
        return TimeSeries(
            granularity=result.granularity,
            buckets=result.buckets,
            series=[
                Series(
                    metric=s.metric,
                    group=_key_text(s.group),
                    is_other=s.is_other,
                    values=s.values,
                    previous=s.previous,
                )
                for s in result.series
            ],
        )

    @strawberry.field(description="Top groups of a dimension, with cursors.")
    async def breakdown(
        self,
        info: TallyInfo,
        dimension: Annotated[
            Dimension,
            strawberry.argument(description="What to group by."),
        ],
        metrics: Annotated[
            list[Metric],
            strawberry.argument(
                description="What to measure; each node's values follow this order. Latency "
                "metrics are over every event selected: name kinds in the filter to "
                "keep them to one kind."
            ),
        ],
        range: RangeArg,
        filter: FilterArg = None,
        metadata_key: Annotated[
            str | None,
            strawberry.argument(description="The metadata key, for the METADATA dimension."),
        ] = None,
        order_by: Annotated[
            Metric | None,
            strawberry.argument(
                description="The metric that ranks the groups; default: the first of `metrics`."
            ),
        ] = None,
        descending: DescendingArg = True,
        first: FirstArg = 10,
        after: AfterArg = None,
        workspace: WorkspaceArg = None,
    ) -> BreakdownConnection:
        asker = info.context.asker(range, filter, workspace)
        page = await engine.breakdown(
            asker, _ref(dimension, metadata_key), tuple(metrics), order_by, descending, first, after
        )
        edges = [
            BreakdownEdge(
                cursor=c,
                node=BreakdownNode(
                    key=_key_text(r.key), values=r.values, _dimension=dimension, _asker=asker
                ),
            )
            for r, c in zip(page.rows, page.cursors, strict=True)
        ]
        return BreakdownConnection(
            total_count=page.total_count,
            metrics=list(metrics),
            edges=edges,
            has_next_page=page.has_next_page,
            end_cursor=edges[-1].cursor if edges else None,
            rows_overlap=dimension in OVERLAPPING_DIMENSIONS,
        )

    @strawberry.field(description="24 values: the metric by local hour of day (0-23).")
    async def hourly_distribution(
        self,
        info: TallyInfo,
        metric: Annotated[
            Metric,
            strawberry.argument(description="What to measure per local hour of day."),
        ],
        range: RangeArg,
        filter: FilterArg = None,
        workspace: WorkspaceArg = None,
    ) -> list[float | None]:
        asker = info.context.asker(range, filter, workspace)
        return await engine.hourly_distribution(asker, metric)

    @strawberry.field(description="Errors by type and by model.")
    async def errors(
        self,
        info: TallyInfo,
        range: RangeArg,
        filter: FilterArg = None,
        workspace: WorkspaceArg = None,
    ) -> ErrorsSummary:
        summary = await engine.errors(info.context.asker(range, filter, workspace))
        return ErrorsSummary(
            total_errors=as_count(summary.total_errors),
            error_rate=summary.error_rate,
            by_type=[ErrorTypeCount(type=t, count=as_count(c)) for t, c in summary.by_type],
            by_model=[
                ModelErrors(model=m, provider=p, errors=as_count(e), error_rate=r)
                for m, p, e, r in summary.by_model
            ],
        )

    @strawberry.field(description="A custom query, like Langfuse's metrics API.")
    async def metrics(
        self,
        info: TallyInfo,
        query: Annotated[
            MetricsQueryInput,
            strawberry.argument(description="The custom query."),
        ],
        workspace: WorkspaceArg = None,
    ) -> MetricsResult:
        return await answer_metrics_query(
            info.context.asker(query.range, query.filter, workspace), query
        )


async def answer_metrics_query(asker: engine.Asker, query: MetricsQueryInput) -> MetricsResult:
    """What `metrics(query:)` answers for `asker` (whose window and filter are the query's):
    also the answer of `ask`, `chart` and the chart images, so that they agree row for row."""
    dims = tuple(_ref(d.dimension, d.metadata_key) for d in query.dimensions or ())
    order = [(o.metric, o.descending) for o in query.order_by or ()]
    result = await engine.custom_query(
        asker, tuple(query.metrics), dims, query.granularity, order, query.limit
    )
    return MetricsResult(
        metrics=list(query.metrics),
        dimensions=[d.dimension for d in dims],
        rows=[
            MetricsRow(bucket=r.bucket, keys=[_key_text(k) for k in r.keys], values=r.values)
            for r in result.rows
        ],
        total_rows=result.total_rows,
        truncated=result.truncated,
    )
