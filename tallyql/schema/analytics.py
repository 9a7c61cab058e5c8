"""Core analytics fields: overview, timeseries, breakdown, hourlyDistribution, errors, metrics."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from tallyql.engine import analytics as engine
from tallyql.engine.buckets import Granularity as EngineGranularity
from tallyql.engine.registry import Dimension as EngineDimension
from tallyql.engine.registry import DimensionRef
from tallyql.engine.registry import Metric as EngineMetric
from tallyql.schema.common import EventFilter, TimeRangeInput
from tallyql.schema.context import TallyInfo
from tallyql.schema.overview import Overview, resolve_overview

if TYPE_CHECKING:
    from tallyql.schema.agents import AgentStats
    from tallyql.schema.directory import User
    from tallyql.schema.sessions import Session

Metric = strawberry.enum(
    EngineMetric,
    name="Metric",
    description=(
        "A measure over events. Percentiles (P50/P95/P99_LATENCY_MS, P95_TTFT_MS, in ms) are "
        "linear interpolation between the closest ranks (PostgreSQL's percentile_cont): "
        "estimated within 1 % relative error from DDSketch buckets, exact when the request "
        "sends X-Tallyql-Plan: raw."
    ),
)
Dimension = strawberry.enum(
    EngineDimension, name="Dimension", description="What to group events by."
)
Granularity = strawberry.enum(
    EngineGranularity,
    name="Granularity",
    description="Time bucket size; AUTO is HOUR up to two days, else DAY. Weeks start Monday.",
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
    metric: Metric  # type: ignore[valid-type]
    group: str | None = strawberry.field(description="The group's key; null when not grouped.")
    is_other: bool = strawberry.field(description="All groups beyond the top ones.")
    values: list[float | None]
    previous: list[float | None] | None = strawberry.field(
        description="The previous period, bucket by bucket (with compareToPrevious)."
    )


@strawberry.type(description="Columnar time series: one bucket list, a value list per series.")
class TimeSeries:
    granularity: Granularity  # type: ignore[valid-type]
    buckets: list[datetime]
    series: list[Series]


@strawberry.type
class BreakdownNode:
    key: str | None = strawberry.field(description="The group's key; null when absent.")
    values: list[float | None] = strawberry.field(description="In the order of `metrics`.")
    _dimension: strawberry.Private[EngineDimension | None] = None
    _asker: strawberry.Private[Any] = None

    @strawberry.field(description="USER breakdowns: the directory's user of the key.")
    async def user(
        self, info: TallyInfo
    ) -> Annotated[User, strawberry.lazy("tallyql.schema.directory")] | None:
        from tallyql.schema.nested import breakdown_user

        return await breakdown_user(info, self._dimension, self._asker, self.key)

    @strawberry.field(description="AGENT breakdowns: the agent over the same range and filter.")
    async def agent(
        self, info: TallyInfo
    ) -> Annotated[AgentStats, strawberry.lazy("tallyql.schema.agents")] | None:
        from tallyql.schema.nested import breakdown_agent

        return await breakdown_agent(info, self._dimension, self._asker, self.key)

    @strawberry.field(description="SESSION breakdowns: the session of the key.")
    async def session(
        self, info: TallyInfo
    ) -> Annotated[Session, strawberry.lazy("tallyql.schema.sessions")] | None:
        from tallyql.schema.nested import breakdown_session

        return await breakdown_session(info, self._dimension, self._asker, self.key)


@strawberry.type
class BreakdownEdge:
    cursor: str
    node: BreakdownNode


@strawberry.type(description="Groups of a dimension, best first, 10 per page by default.")
class BreakdownConnection:
    total_count: int
    metrics: list[Metric]  # type: ignore[valid-type]
    edges: list[BreakdownEdge]
    has_next_page: bool
    end_cursor: str | None

    @strawberry.field
    def nodes(self) -> list[BreakdownNode]:
        return [e.node for e in self.edges]


@strawberry.type
class ErrorTypeCount:
    type: str | None
    count: float


@strawberry.type
class ModelErrors:
    model: str | None
    provider: str | None
    errors: float
    error_rate: float | None


@strawberry.type
class ErrorsSummary:
    total_errors: float
    error_rate: float | None
    by_type: list[ErrorTypeCount]
    by_model: list[ModelErrors]


@strawberry.input
class DimensionInput:
    dimension: Dimension  # type: ignore[valid-type]
    metadata_key: str | None = None


@strawberry.input
class MetricOrderInput:
    metric: Metric  # type: ignore[valid-type]
    descending: bool = True


@strawberry.input(description="A custom query: metrics grouped by up to 3 dimensions and time.")
class MetricsQueryInput:
    metrics: list[Metric]  # type: ignore[valid-type]
    range: TimeRangeInput
    dimensions: list[DimensionInput] | None = None
    filter: EventFilter | None = None
    granularity: Granularity | None = None  # type: ignore[valid-type]
    order_by: list[MetricOrderInput] | None = None
    limit: int | None = strawberry.field(
        default=None,
        description="Rows to return (default 100, at most 10,000); required for USER, "
        "SESSION, API_KEY, CALLER and METADATA.",
    )


@strawberry.type
class MetricsRow:
    bucket: datetime | None
    keys: list[str | None]
    values: list[float | None]


@strawberry.type(description="Rows of a custom query; `columns` holds the same data columnar.")
class MetricsResult:
    metrics: list[Metric]  # type: ignore[valid-type]
    dimensions: list[Dimension]  # type: ignore[valid-type]
    rows: list[MetricsRow]
    total_rows: int
    truncated: bool

    @strawberry.field(
        description="Columnar form: buckets, one key list per dimension, one value list per metric."
    )
    def columns(self) -> MetricsColumns:
        return MetricsColumns(
            buckets=[r.bucket for r in self.rows],
            keys=[[r.keys[i] for r in self.rows] for i in range(len(self.dimensions))],
            values=[[r.values[i] for r in self.rows] for i in range(len(self.metrics))],
        )


@strawberry.type
class MetricsColumns:
    buckets: list[datetime | None]
    keys: list[list[str | None]]
    values: list[list[float | None]]


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
        range: TimeRangeInput,
        filter: EventFilter | None = None,
        workspace: WorkspaceArg = None,
    ) -> Overview:
        return await resolve_overview(info, info.context.asker(range, filter, workspace))

    @strawberry.field(
        description="Metrics over time, optionally for the top groups of a dimension."
    )
    async def timeseries(
        self,
        info: TallyInfo,
        metrics: list[Metric],  # type: ignore[valid-type]
        range: TimeRangeInput,
        granularity: Granularity = EngineGranularity.AUTO,  # type: ignore[valid-type]
        filter: EventFilter | None = None,
        group_by: Dimension | None = None,  # type: ignore[valid-type]
        metadata_key: str | None = None,
        limit_groups: int = 10,
        compare_to_previous: bool = False,
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
        dimension: Dimension,  # type: ignore[valid-type]
        metrics: list[Metric],  # type: ignore[valid-type]
        range: TimeRangeInput,
        filter: EventFilter | None = None,
        metadata_key: str | None = None,
        order_by: Metric | None = None,  # type: ignore[valid-type]
        descending: bool = True,
        first: int = 10,
        after: str | None = None,
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
        )

    @strawberry.field(description="24 values: the metric by local hour of day (0-23).")
    async def hourly_distribution(
        self,
        info: TallyInfo,
        metric: Metric,  # type: ignore[valid-type]
        range: TimeRangeInput,
        filter: EventFilter | None = None,
        workspace: WorkspaceArg = None,
    ) -> list[float | None]:
        asker = info.context.asker(range, filter, workspace)
        return await engine.hourly_distribution(asker, metric)

    @strawberry.field(description="Errors by type and by model.")
    async def errors(
        self,
        info: TallyInfo,
        range: TimeRangeInput,
        filter: EventFilter | None = None,
        workspace: WorkspaceArg = None,
    ) -> ErrorsSummary:
        summary = await engine.errors(info.context.asker(range, filter, workspace))
        return ErrorsSummary(
            total_errors=summary.total_errors,
            error_rate=summary.error_rate,
            by_type=[ErrorTypeCount(type=t, count=c) for t, c in summary.by_type],
            by_model=[
                ModelErrors(model=m, provider=p, errors=e, error_rate=r)
                for m, p, e, r in summary.by_model
            ],
        )

    @strawberry.field(description="A custom query, like Langfuse's metrics API.")
    async def metrics(
        self,
        info: TallyInfo,
        query: MetricsQueryInput,
        workspace: WorkspaceArg = None,
    ) -> MetricsResult:
        asker = info.context.asker(query.range, query.filter, workspace)
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
