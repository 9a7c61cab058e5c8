"""Types shared by many fields: enums, time ranges, event filters, page info."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import Enum

import strawberry

from tallyql.engine.filters import EventFilterSpec, MetadataMatch
from tallyql.engine.timerange import Preset, TimeWindow, resolve_window


@strawberry.enum(description="What kind of call an event records.")
class EventKind(Enum):
    LLM_CALL = "llm_call"
    TOOL_CALL = "tool_call"
    AGENT_RUN = "agent_run"
    HTTP_REQUEST = "http_request"


@strawberry.enum(description="How a call ended.")
class EventStatus(Enum):
    SUCCESS = "success"
    ERROR = "error"
    BLOCKED = "blocked"


@strawberry.enum(description="Class of error of a failed or blocked call.")
class ErrorType(Enum):
    RATE_LIMIT = "rate_limit"
    INVALID_REQUEST = "invalid_request"
    TIMEOUT = "timeout"
    AUTH_ERROR = "auth_error"
    MODEL_ERROR = "model_error"
    POLICY_BLOCKED = "policy_blocked"
    OTHER = "other"


@strawberry.enum(description="Where an event's cost came from.")
class CostSource(Enum):
    PROVIDED = "provided"
    COMPUTED = "computed"
    UNPRICED = "unpriced"


RangePreset = strawberry.enum(
    Preset,
    name="RangePreset",
    description="Rolling windows end now; period-to-date ones start at the period's local start.",
)


@strawberry.input(description="A time window: a preset, or start and end; in an IANA time zone.")
class TimeRangeInput:
    preset: RangePreset | None = None
    start: datetime | None = strawberry.field(default=None, description="Inclusive, with offset.")
    end: datetime | None = strawberry.field(default=None, description="Exclusive, with offset.")
    timezone: str = strawberry.field(
        default="UTC", description="IANA zone for day boundaries and buckets."
    )

    def resolve(self, now: datetime | None = None) -> TimeWindow:
        return resolve_window(self.preset, self.start, self.end, self.timezone, now)


@strawberry.input(description="Select events whose metadata has this key with this value.")
class MetadataFilterInput:
    key: str
    value: str


@strawberry.input(
    description="Lists mean any of; fields combine with AND. Groups mean their current members."
)
class EventFilter:
    providers: list[str] | None = None
    models: list[str] | None = None
    kinds: list[EventKind] | None = None
    statuses: list[EventStatus] | None = None
    error_types: list[ErrorType] | None = None
    users: list[str] | None = None
    groups: list[str] | None = None
    api_keys: list[str] | None = None
    callers: list[str] | None = None
    caller_ips: list[str] | None = None
    agents: list[str] | None = None
    agent_instances: list[str] | None = None
    sessions: list[str] | None = None
    traces: list[str] | None = None
    runs: list[str] | None = None
    nodes: list[str] | None = None
    tools: list[str] | None = None
    mcp_servers: list[str] | None = None
    gateways: list[str] | None = None
    protocols: list[str] | None = None
    request_types: list[str] | None = None
    billing_modes: list[str] | None = None
    policies: list[str] | None = None
    cost_sources: list[CostSource] | None = None
    is_byok: bool | None = None
    tags: list[str] | None = strawberry.field(default=None, description="Any of these tags.")
    metadata: list[MetadataFilterInput] | None = strawberry.field(
        default=None, description="All of these key/value pairs."
    )

    def to_spec(self) -> EventFilterSpec:
        def values(items: list[str] | list[Enum] | None) -> tuple[str, ...]:
            return tuple(i.value if isinstance(i, Enum) else i for i in items or ())

        return EventFilterSpec(
            providers=values(self.providers),
            models=values(self.models),
            kinds=values(self.kinds),
            statuses=values(self.statuses),
            error_types=values(self.error_types),
            users=values(self.users),
            groups=values(self.groups),
            api_keys=values(self.api_keys),
            callers=values(self.callers),
            caller_ips=values(self.caller_ips),
            agents=values(self.agents),
            agent_instances=values(self.agent_instances),
            sessions=values(self.sessions),
            traces=values(self.traces),
            runs=values(self.runs),
            nodes=values(self.nodes),
            tools=values(self.tools),
            mcp_servers=values(self.mcp_servers),
            gateways=values(self.gateways),
            protocols=values(self.protocols),
            request_types=values(self.request_types),
            billing_modes=values(self.billing_modes),
            policies=values(self.policies),
            cost_sources=values(self.cost_sources),
            is_byok=self.is_byok,
            tags=values(self.tags),
            metadata=tuple(MetadataMatch(m.key, m.value) for m in self.metadata or ()),
        )


def filter_spec(value: EventFilter | None) -> EventFilterSpec:
    return value.to_spec() if value is not None else EventFilterSpec()


@strawberry.type(description="Relay page info; lists page forward with first/after.")
class PageInfo:
    has_next_page: bool
    end_cursor: str | None
    has_previous_page: bool
    start_cursor: str | None

    @classmethod
    def of(cls, cursors: Sequence[str], has_next_page: bool, after: str | None) -> PageInfo:
        """The page info of a forward page with these cursors, asked for after `after`."""
        return cls(
            has_next_page=has_next_page,
            end_cursor=cursors[-1] if cursors else None,
            has_previous_page=after is not None,
            start_cursor=cursors[0] if cursors else None,
        )
