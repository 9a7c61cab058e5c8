"""The items of `Subscription.events`: the union `LiveEvent` and its member types, made from
the live bus's rows and notices."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum
from typing import Annotated, Any, TypeAlias

import strawberry

from tallyql.alerts.health import HealthCondition
from tallyql.alerts.model import Operator
from tallyql.engine.query.periods import Period
from tallyql.live import subscriber as kinds
from tallyql.live.batches import BATCH, EventWindow
from tallyql.live.compact import LiveRow
from tallyql.live.stream import CostSnapshot
from tallyql.live.totals import Totals
from tallyql.money import to_usd
from tallyql.schema.analytics import Metric
from tallyql.schema.audit import AuditEvent
from tallyql.schema.base.common import ErrorType, EventKind, EventStatus
from tallyql.schema.base.described import describe_values, event_field
from tallyql.schema.base.scalars import Long
from tallyql.schema.base.usage import TokenKinds, token_kinds
from tallyql.storage.types import from_micros


@strawberry.enum(description="What a live subscription receives (Lagged notices always come).")
class LiveEventType(Enum):
    _value_: str  # what strawberry.enum_value(...) holds; the checker sees only the wrapper
    REQUEST = strawberry.enum_value(kinds.REQUEST, description="Every committed event.")
    ERROR = strawberry.enum_value(kinds.ERROR, description="Committed events with status error.")
    COST_UPDATE = strawberry.enum_value(
        kinds.COST_UPDATE, description="Running totals, at most once per interval."
    )
    LIMIT_WARNING = strawberry.enum_value(
        kinds.LIMIT_WARNING, description="A budget crossed a threshold."
    )
    AUDIT = strawberry.enum_value(kinds.AUDIT, description="Audit events recorded.")
    ALERT = strawberry.enum_value(kinds.ALERT, description="Alert rules firing or resolving.")


BudgetPeriod: TypeAlias = Period  # strawberry.enum below marks the class in place
strawberry.enum(BudgetPeriod, name="BudgetPeriod", description="A budget's period.")
describe_values(
    BudgetPeriod,
    {
        "DAY": "A local calendar day.",
        "WEEK": "A local week from Monday 00:00.",
        "MONTH": "A local calendar month.",
    },
)
HealthConditionType: TypeAlias = HealthCondition  # strawberry.enum below marks it in place
strawberry.enum(
    HealthConditionType,
    name="HealthCondition",
    description="What a health alert rule watches: the server itself, every replica of it, "
    "not a workspace's events.",
)
describe_values(
    HealthConditionType,
    {
        "WRITER_STALL_SECONDS": "Seconds the writer of any replica has held accepted events "
        "without committing a batch (since its last commit or the oldest waiting event's "
        "acceptance, whichever is later; 0 when nothing waits), as of its last heartbeat; a "
        "replica silent for three heartbeat intervals counts its silence too.",
        "WRITER_BACKLOG_EVENTS": "Events accepted and not yet committed by one replica's "
        "writer (queued or in a batch being written): the most of any replica, as of its last "
        "heartbeat; a replica refuses events beyond TALLYQL_WRITER_QUEUE_EVENTS.",
        "COMPACTION_LAG_SECONDS": "Seconds the oldest rollup row staged for compaction has "
        "waited (PostgreSQL, on the database's clock; 0 when nothing is staged, and always 0 "
        "on SQLite, whose writer folds rollups as it commits).",
        "JOBS_DEGRADED": "Background jobs that /health calls degraded (failing repeatedly, "
        "falling behind, a workspace quarantined, a task stopped), counted over every "
        "replica's last heartbeat (count).",
    },
)
AlertOperator: TypeAlias = Operator  # strawberry.enum below marks the class in place
strawberry.enum(AlertOperator, name="AlertOperator", description="metric <operator> threshold.")
describe_values(
    AlertOperator,
    {
        "GT": "Fires when the metric is greater than the threshold.",
        "GTE": "Fires when the metric is greater than or equal to the threshold.",
        "LT": "Fires when the metric is less than the threshold.",
        "LTE": "Fires when the metric is less than or equal to the threshold.",
        "EQ": "Fires when the metric equals the threshold.",
    },
)


@strawberry.enum(description="Whether an alert started or stopped firing.")
class AlertTransition(Enum):
    FIRING = strawberry.enum_value("firing", description="The condition started to hold.")
    RESOLVED = strawberry.enum_value("ok", description="The condition stopped holding.")


@strawberry.type(description="A committed event (REQUEST), compact.")
class RequestEvent:
    id: strawberry.ID = event_field("id")
    timestamp: datetime = event_field("timestamp")
    committed_at: datetime = strawberry.field(description="When the event was committed.")
    kind: EventKind = event_field("kind")
    status: EventStatus = event_field("status")
    status_code: int | None = event_field("status_code")
    provider: str | None = event_field("provider")
    model: str | None = event_field("model")
    user_id: str | None = event_field("user_id")
    api_key_id: str | None = event_field("api_key_id")
    agent_id: str | None = event_field("agent_id")
    agent_instance_id: str | None = event_field("agent_instance_id")
    session_id: str | None = event_field("session_id")
    trace_id: str | None = event_field("trace_id")
    tool: str | None = event_field("tool")
    mcp_server: str | None = event_field("mcp_server")
    gateway: str | None = event_field("gateway")
    input_tokens: Long = event_field("input_tokens")
    output_tokens: Long = event_field("output_tokens")
    cache_read_tokens: Long = event_field("cache_read_tokens")
    cache_write_tokens: Long = event_field("cache_write_tokens")
    reasoning_tokens: Long = event_field("reasoning_tokens")
    total_tokens: Long = strawberry.field(description="Input plus output tokens.")
    cost_usd: float = strawberry.field(
        description="Cost in USD: the caller's, else priced at ingest; 0 when unpriced (see "
        "costSource)."
    )
    latency_ms: float | None = event_field("latency_ms")
    ttft_ms: float | None = event_field("ttft_ms")
    tags: list[str] = event_field("tags")


@strawberry.type(description="A committed event with status error (ERROR).")
class ErrorEvent(RequestEvent):
    error_type: ErrorType | None = event_field("error_type")
    error_message: str | None = event_field("error_message")
    policy_id: str | None = event_field("policy_id")
    policy_name: str | None = event_field("policy_name")


@strawberry.type(description="Requests, tokens and cost (exact sums).")
class CostTotals(TokenKinds):
    requests: Long = strawberry.field(description="Events (count).")
    errors: Long = strawberry.field(description="Events with status error (count).")

    @classmethod
    def of(cls, totals: Totals) -> CostTotals:
        return cls(
            requests=totals.requests,
            errors=totals.errors,
            input_tokens=totals.input_tokens,
            output_tokens=totals.output_tokens,
            cache_read_tokens=totals.cache_read_tokens,
            cache_write_tokens=totals.cache_write_tokens,
            reasoning_tokens=totals.reasoning_tokens,
            total_tokens=totals.input_tokens + totals.output_tokens,
            cost_usd=to_usd(totals.cost_nanousd),
        )


@strawberry.type(
    description="Running totals for the subscription's filter (COST_UPDATE): since it began, "
    "and for today in its time zone (the engine's figure at the start plus streamed events)."
)
class CostUpdate:
    at: datetime = strawberry.field(description="When these totals were taken.")
    since: datetime = strawberry.field(description="When the subscription began.")
    since_start: CostTotals = strawberry.field(description="Totals since the subscription began.")
    today_start: datetime = strawberry.field(description="Local midnight of today.")
    today: CostTotals = strawberry.field(description="Totals since local midnight.")
    timezone: str = strawberry.field(description="The IANA zone that sets today.")


@strawberry.type(description="A budget crossed one of its thresholds (once per period).")
class LimitWarning:
    budget_id: strawberry.ID = strawberry.field(description="The budget's id.")
    budget_name: str = strawberry.field(description="The budget's name.")
    threshold: int = strawberry.field(description="The percent of the limit that was reached.")
    percent_used: float = strawberry.field(
        description="Spend / limit in percent (100 is the whole limit)."
    )
    spend_usd: float = strawberry.field(description="Spend in the period so far, in USD.")
    limit_usd: float = strawberry.field(description="The budget's limit in USD.")
    period: BudgetPeriod = strawberry.field(description="The budget's period.")
    period_start: datetime = strawberry.field(description="The current period's start.")
    period_end: datetime = strawberry.field(description="The current period's end.")
    at: datetime = strawberry.field(description="When the crossing was found.")


@strawberry.type(description="An alert rule started (FIRING) or stopped (RESOLVED) firing.")
class AlertEvent:
    rule_id: strawberry.ID = strawberry.field(description="The alert rule's id.")
    rule_name: str = strawberry.field(description="The alert rule's name.")
    firing_id: strawberry.ID | None = strawberry.field(description="The firing's id.")
    transition: AlertTransition = strawberry.field(description="Started or stopped firing.")
    metric: Metric | None = strawberry.field(
        description="The metric the rule watches; null for a health rule."
    )
    health: HealthConditionType | None = strawberry.field(
        description="The health condition a health rule watches; null for a metric rule."
    )
    operator: AlertOperator = strawberry.field(
        description="How the metric (or health condition) is compared with the threshold."
    )
    threshold: float = strawberry.field(
        description="The threshold, in the metric's (or health condition's) unit."
    )
    value: float | None = strawberry.field(
        description="The metric's value over the window (a health condition's at the "
        "evaluation), in its unit; null without data."
    )
    window_minutes: int = strawberry.field(
        description="The rule's window in minutes: the metric was measured over its last minutes."
    )
    at: datetime = strawberry.field(description="When the transition was found.")


@strawberry.type(description="Items were dropped for this subscriber because it fell behind.")
class Lagged:
    count: int = strawberry.field(description="Items dropped for this subscriber (count).")


LiveEvent = Annotated[
    RequestEvent | ErrorEvent | CostUpdate | LimitWarning | AuditEvent | AlertEvent | Lagged,
    strawberry.union("LiveEvent", description="One item of a live subscription."),
]


BatchedEvent = Annotated[
    RequestEvent | ErrorEvent,
    strawberry.union("BatchedEvent", description="One committed event of an EventBatch."),
]


@strawberry.type(
    description="The events of one window of a coalesced subscription (eventBatches), in "
    "commit order, with the window's totals and running totals. Every subscriber of the same "
    "workspace, filter, types and maxLatencyMs on one server receives the same batches."
)
class EventBatch:
    events: list[BatchedEvent] = strawberry.field(
        description="The window's events of the chosen types, in commit order."
    )
    count: int = strawberry.field(description="Events in `events` (count).")
    opened_at: datetime = strawberry.field(
        description="When the window's first event reached this server's live bus."
    )
    closed_at: datetime = strawberry.field(
        description="When the window closed: at most maxLatencyMs after openedAt."
    )
    totals: CostTotals = strawberry.field(
        description="Totals of the window's events that match the filter, of every type "
        "(an ERROR-only batch still counts the requests)."
    )
    running_totals: CostTotals = strawberry.field(
        description="Totals of the events that match the filter since runningSince, this "
        "window and any dropped for a lagging subscriber included."
    )
    running_since: datetime = strawberry.field(
        description="When this server started the running totals: when the first current "
        "subscriber of this workspace, filter, types and maxLatencyMs subscribed (at or "
        "before your own subscription)."
    )
    sequence: Long = strawberry.field(
        description="Windows this server made for these subscribers before this one (count)."
    )


EventBatchItem = Annotated[
    EventBatch | Lagged,
    strawberry.union(
        "EventBatchItem",
        description="One item of a coalesced subscription: a batch, or Lagged when batches "
        "were dropped because the subscriber fell behind.",
    ),
]


def _request_fields(row: LiveRow) -> dict[str, Any]:
    return {
        "id": strawberry.ID(row.id),
        "timestamp": from_micros(row.ts_us),
        "committed_at": datetime.fromtimestamp(row.committed_at, tz=UTC),
        "kind": EventKind(row.kind),
        "status": EventStatus(row.status),
        "status_code": row.status_code,
        "provider": row.provider,
        "model": row.model,
        "user_id": row.user_id,
        "api_key_id": row.api_key_id,
        "agent_id": row.agent_id,
        "agent_instance_id": row.agent_instance_id,
        "session_id": row.session_id,
        "trace_id": row.trace_id,
        "tool": row.tool,
        "mcp_server": row.mcp_server,
        "gateway": row.gateway,
        **token_kinds(
            row.input_tokens,
            row.output_tokens,
            row.cache_read_tokens,
            row.cache_write_tokens,
            row.reasoning_tokens,
            row.cost_nanousd,
        ),
        "latency_ms": row.latency_ms,
        "ttft_ms": row.ttft_ms,
        "tags": row.tags,
    }


def to_live_event(kind: str, value: Any) -> Any:
    """The GraphQL item of a bus item."""
    if kind == kinds.REQUEST:
        return RequestEvent(**_request_fields(value))
    if kind == kinds.ERROR:
        row: LiveRow = value
        return ErrorEvent(
            **_request_fields(row),
            error_type=ErrorType(row.error_type) if row.error_type else None,
            error_message=row.error_message,
            policy_id=row.policy_id,
            policy_name=row.policy_name,
        )
    if kind == kinds.COST_UPDATE:
        snap: CostSnapshot = value
        return CostUpdate(
            at=snap.at,
            since=snap.since,
            since_start=CostTotals.of(snap.since_start),
            today_start=snap.today_start,
            today=CostTotals.of(snap.today),
            timezone=snap.timezone,
        )
    if kind == kinds.LIMIT_WARNING:
        return LimitWarning(
            budget_id=strawberry.ID(value["budget_id"]),
            budget_name=value["budget_name"],
            threshold=value["threshold"],
            percent_used=value["percent_used"],
            spend_usd=to_usd(value["spend_nanousd"]),
            limit_usd=to_usd(value["amount_nanousd"]),
            period=Period(value["period"]),
            period_start=from_micros(value["period_start_us"]),
            period_end=from_micros(value["period_end_us"]),
            at=from_micros(value["at_us"]),
        )
    if kind == kinds.ALERT:
        return AlertEvent(
            rule_id=strawberry.ID(value["rule_id"]),
            rule_name=value["rule_name"],
            firing_id=strawberry.ID(value["firing_id"]) if value["firing_id"] else None,
            transition=AlertTransition(value["state"]),
            metric=Metric(value["metric"]) if value["metric"] else None,
            health=HealthCondition(value["health"]) if value.get("health") else None,
            operator=Operator(value["operator"]),
            threshold=value["threshold"],
            value=value["value"],
            window_minutes=value["window_seconds"] // 60,
            at=from_micros(value["at_us"]),
        )
    if kind == kinds.AUDIT:
        return AuditEvent.from_row({**value, "ts": from_micros(value["ts_us"])})
    if kind == kinds.LAGGED:
        return Lagged(count=value)
    if kind == BATCH:
        window: EventWindow = value
        return EventBatch(
            events=[to_live_event(k, row) for k, row in window.items],
            count=len(window.rows),
            opened_at=datetime.fromtimestamp(window.opened_at, tz=UTC),
            closed_at=datetime.fromtimestamp(window.closed_at, tz=UTC),
            totals=CostTotals.of(window.totals),
            running_totals=CostTotals.of(window.running),
            running_since=datetime.fromtimestamp(window.since, tz=UTC),
            sequence=window.sequence,
        )
    raise ValueError(f"unknown live item {kind!r}")
