"""The items of `Subscription.events`: the union `LiveEvent` and its member types, made from
the live bus's rows and notices."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum
from typing import Annotated, Any

import strawberry

from tallyql.alerts.model import Operator
from tallyql.engine.periods import Period
from tallyql.ingest.pricing import NANO_PER_USD
from tallyql.live import subscriber as kinds
from tallyql.live.compact import LiveRow
from tallyql.live.stream import CostSnapshot
from tallyql.live.totals import Totals
from tallyql.schema.analytics import Metric
from tallyql.schema.audit import AuditEvent
from tallyql.schema.common import ErrorType, EventKind, EventStatus
from tallyql.schema.scalars import Long
from tallyql.storage.types import from_micros


@strawberry.enum(description="What a live subscription receives (Lagged notices always come).")
class LiveEventType(Enum):
    REQUEST = kinds.REQUEST
    ERROR = kinds.ERROR
    COST_UPDATE = kinds.COST_UPDATE
    LIMIT_WARNING = kinds.LIMIT_WARNING
    AUDIT = kinds.AUDIT
    ALERT = kinds.ALERT


BudgetPeriod = strawberry.enum(Period, name="BudgetPeriod", description="A budget's period.")
AlertOperator = strawberry.enum(
    Operator, name="AlertOperator", description="metric <operator> threshold."
)


@strawberry.enum(description="Whether an alert started or stopped firing.")
class AlertTransition(Enum):
    FIRING = "firing"
    RESOLVED = "ok"


@strawberry.type(description="A committed event (REQUEST), compact.")
class RequestEvent:
    id: strawberry.ID
    timestamp: datetime
    committed_at: datetime = strawberry.field(description="When the event was committed.")
    kind: EventKind
    status: EventStatus
    status_code: int | None
    provider: str | None
    model: str | None
    user_id: str | None
    api_key_id: str | None
    agent_id: str | None
    agent_instance_id: str | None
    session_id: str | None
    trace_id: str | None
    tool: str | None
    mcp_server: str | None
    gateway: str | None
    input_tokens: Long
    output_tokens: Long
    cache_read_tokens: Long
    cache_write_tokens: Long
    reasoning_tokens: Long
    total_tokens: Long
    cost_usd: float
    latency_ms: float | None
    ttft_ms: float | None
    tags: list[str]


@strawberry.type(description="A committed event with status error (ERROR).")
class ErrorEvent(RequestEvent):
    error_type: ErrorType | None
    error_message: str | None
    policy_id: str | None
    policy_name: str | None


@strawberry.type(description="Requests, tokens and cost (exact sums).")
class CostTotals:
    requests: Long
    errors: Long
    input_tokens: Long
    output_tokens: Long
    cache_read_tokens: Long
    cache_write_tokens: Long
    reasoning_tokens: Long
    total_tokens: Long
    cost_usd: float

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
            cost_usd=totals.cost_nanousd / NANO_PER_USD,
        )


@strawberry.type(
    description="Running totals for the subscription's filter (COST_UPDATE): since it began, "
    "and for today in its time zone (the engine's figure at the start plus streamed events)."
)
class CostUpdate:
    at: datetime
    since: datetime
    since_start: CostTotals
    today_start: datetime
    today: CostTotals
    timezone: str


@strawberry.type(description="A budget crossed one of its thresholds (once per period).")
class LimitWarning:
    budget_id: strawberry.ID
    budget_name: str
    threshold: int = strawberry.field(description="The percent of the limit that was reached.")
    percent_used: float
    spend_usd: float
    limit_usd: float
    period: BudgetPeriod  # type: ignore[valid-type]
    period_start: datetime
    period_end: datetime
    at: datetime


@strawberry.type(description="An alert rule started (FIRING) or stopped (RESOLVED) firing.")
class AlertEvent:
    rule_id: strawberry.ID
    rule_name: str
    firing_id: strawberry.ID | None
    transition: AlertTransition
    metric: Metric  # type: ignore[valid-type]
    operator: AlertOperator  # type: ignore[valid-type]
    threshold: float
    value: float | None
    window_minutes: float
    at: datetime


@strawberry.type(description="Items were dropped for this subscriber because it fell behind.")
class Lagged:
    count: int


LiveEvent = Annotated[
    RequestEvent | ErrorEvent | CostUpdate | LimitWarning | AuditEvent | AlertEvent | Lagged,
    strawberry.union("LiveEvent", description="One item of a live subscription."),
]


def _request_fields(row: LiveRow) -> dict[str, Any]:
    return {
        "id": strawberry.ID(row["id"]),
        "timestamp": from_micros(row["ts_us"]),
        "committed_at": datetime.fromtimestamp(row["committed_at"], tz=UTC),
        "kind": EventKind(row["kind"]),
        "status": EventStatus(row["status"]),
        "status_code": row["status_code"],
        "provider": row["provider"],
        "model": row["model"],
        "user_id": row["user_id"],
        "api_key_id": row["api_key_id"],
        "agent_id": row["agent_id"],
        "agent_instance_id": row["agent_instance_id"],
        "session_id": row["session_id"],
        "trace_id": row["trace_id"],
        "tool": row["tool"],
        "mcp_server": row["mcp_server"],
        "gateway": row["gateway"],
        "input_tokens": row["input_tokens"],
        "output_tokens": row["output_tokens"],
        "cache_read_tokens": row["cache_read_tokens"],
        "cache_write_tokens": row["cache_write_tokens"],
        "reasoning_tokens": row["reasoning_tokens"],
        "total_tokens": row["input_tokens"] + row["output_tokens"],
        "cost_usd": row["cost_nanousd"] / NANO_PER_USD,
        "latency_ms": row["latency_ms"],
        "ttft_ms": row["ttft_ms"],
        "tags": row["tags"],
    }


def to_live_event(kind: str, value: Any) -> Any:
    """The GraphQL item of a bus item."""
    if kind == kinds.REQUEST:
        return RequestEvent(**_request_fields(value))
    if kind == kinds.ERROR:
        return ErrorEvent(
            **_request_fields(value),
            error_type=ErrorType(value["error_type"]) if value["error_type"] else None,
            error_message=value["error_message"],
            policy_id=value["policy_id"],
            policy_name=value["policy_name"],
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
            spend_usd=value["spend_nanousd"] / NANO_PER_USD,
            limit_usd=value["amount_nanousd"] / NANO_PER_USD,
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
            metric=Metric(value["metric"]),
            operator=Operator(value["operator"]),
            threshold=value["threshold"],
            value=value["value"],
            window_minutes=value["window_seconds"] / 60,
            at=from_micros(value["at_us"]),
        )
    if kind == kinds.AUDIT:
        return AuditEvent.from_row({**value, "ts": from_micros(value["ts_us"])})
    if kind == kinds.LAGGED:
        return Lagged(count=value)
    raise ValueError(f"unknown live item {kind!r}")
