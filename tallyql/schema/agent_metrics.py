"""`agentMetrics`: the coding agents' OTLP metrics (POST /v1/metrics), summed per metric and
per group of attribute values, from the metrics store (`ingest/metric_store.py`)."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated

import strawberry

from tallyql.auth.principal import Permission
from tallyql.ingest.metric_store import MetricGroupRow, read_metric_groups
from tallyql.schema.base.common import OptionalRangeArg
from tallyql.schema.base.context import TallyInfo
from tallyql.schema.base.errors import BadInput
from tallyql.schema.base.scalars import JSON, Long

MAX_NAMES = 100
MAX_GROUP_BY = 10


@strawberry.enum(description="The OpenTelemetry instrument kind of a metric.")
class MetricKind(Enum):
    SUM = strawberry.enum_value(
        "sum", description="A counter or up-down counter, stored as deltas."
    )
    GAUGE = strawberry.enum_value("gauge", description="A reading at a moment.")
    HISTOGRAM = strawberry.enum_value(
        "histogram", description="A distribution of observations (explicit buckets)."
    )


@strawberry.type(
    description="One metric over the range, for one group of attribute values. Metrics are "
    "stored as the agents send them and never change the event views: where a metric and "
    "the events describe the same thing (claude_code.cost.usage and claude_code.token.usage "
    "against claude_code.api_request records sent to /v1/logs, gemini_cli.token.usage "
    "against gemini_cli.api_response records), every event view counts the events, which "
    "win: they carry each call's model, session, user and status and are deduplicated by "
    "record. The metric is the agent's own tally, to check that no log record was lost."
)
class MetricGroup:
    name: str = strawberry.field(description="The metric's name, e.g. claude_code.cost.usage.")
    kind: MetricKind = strawberry.field(description="How its points add up.")
    unit: str = strawberry.field(description="The unit the agent declared (e.g. USD, tokens, s).")
    group: JSON = strawberry.field(
        description="The value of each groupBy attribute in this group (null where its series "
        "lack the attribute): a JSON object."
    )
    total: float | None = strawberry.field(
        description="Sums: the increase over the range (the sum of the deltas of every series "
        "of the group), in the metric's unit. Histograms: the sum of the observations made in "
        "the range. Gauges: null."
    )
    count: Long | None = strawberry.field(
        description="Histograms: observations made in the range (count). Others: null."
    )
    last: float | None = strawberry.field(
        description="Gauges: the sum over the group's series of each series' latest reading in "
        "the range, in the metric's unit. Others: null."
    )
    minimum: float | None = strawberry.field(
        description="Histograms: the smallest observation the agent reported in the range, "
        "when it reports one. Others: null."
    )
    maximum: float | None = strawberry.field(
        description="Histograms: the largest observation the agent reported in the range, "
        "when it reports one. Others: null."
    )
    events_total: float | None = strawberry.field(
        description="The same figure counted from the events of the agent's log records over "
        "the same range and group, where they overlap (claude_code.cost.usage: the cost in "
        "USD of claude_code.api_request events; claude_code.token.usage and "
        "gemini_cli.token.usage: the tokens of claude_code.api_request and "
        "gemini_cli.api_response events of the group's type, counted the agent's way). Null "
        "for other metrics, for a groupBy key that names no event column (model, session.id, "
        "user.email and the token metrics' type do), and for Gemini's tool tokens (type tool: "
        "the events do not hold them; an entry not split by type leaves them out). The events "
        "win in every event view; a gap means log records were lost or the metric counted "
        "calls near the range's edges differently (a point covers the export interval before "
        "its time)."
    )
    series: int = strawberry.field(
        description="Series (distinct attribute sets, resource included) in the group (count)."
    )
    points: int = strawberry.field(description="Data points in the range (count).")
    first_at: datetime = strawberry.field(description="The time of the group's first point.")
    last_at: datetime = strawberry.field(description="The time of the group's last point.")

    @classmethod
    def from_row(cls, row: MetricGroupRow) -> MetricGroup:
        return cls(
            name=row.name,
            kind=MetricKind(row.kind),
            unit=row.unit,
            group=row.group,
            total=row.total,
            count=None if row.count is None else Long(int(row.count)),
            last=row.last,
            minimum=row.minimum,
            maximum=row.maximum,
            events_total=row.events_total,
            series=row.series,
            points=row.points,
            first_at=row.first_at,
            last_at=row.last_at,
        )


@strawberry.type
class AgentMetricsQuery:
    @strawberry.field(
        description="Coding agents' OTLP metrics (POST /v1/metrics) of the workspace: one "
        "entry per metric and group of attribute values, ordered by name then group. A point "
        "counts in the range when its time (the end of the interval it measures) falls in it."
    )
    async def agent_metrics(
        self,
        info: TallyInfo,
        range: OptionalRangeArg = None,
        names: Annotated[
            list[str] | None,
            strawberry.argument(
                description="Only these metric names (at most 100); null: every metric."
            ),
        ] = None,
        group_by: Annotated[
            list[str] | None,
            strawberry.argument(
                description="Attribute keys to split each metric by (at most 10), e.g. model, "
                "type, user.email, session.id; resource attributes such as service.name count "
                "too. Null: one entry per metric."
            ),
        ] = None,
    ) -> list[MetricGroup]:
        principal = info.context.require(Permission.READ)
        if names is not None and len(names) > MAX_NAMES:
            raise BadInput(f"names: at most {MAX_NAMES}")
        if group_by is not None and len(group_by) > MAX_GROUP_BY:
            raise BadInput(f"groupBy: at most {MAX_GROUP_BY}")
        window = range.resolve() if range is not None else None
        rows = await read_metric_groups(
            info.context.services.db,
            principal.workspace_id,
            window.start if window else None,
            window.end if window else None,
            names or (),
            group_by or (),
        )
        return [MetricGroup.from_row(r) for r in rows]
