"""Types shared by many fields: enums, time ranges, event filters, page info."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import Enum
from typing import Annotated, TypeAlias

import strawberry

from tallyql.engine.query.filters import EventFilterSpec, MetadataMatch
from tallyql.engine.query.timerange import Preset, TimeWindow, resolve_window
from tallyql.schema.base.described import describe_values


@strawberry.enum(description="What kind of call an event records.")
class EventKind(Enum):
    LLM_CALL = strawberry.enum_value("llm_call", description="A call to a model (LLM).")
    TOOL_CALL = strawberry.enum_value("tool_call", description="A tool (MCP) call.")
    AGENT_RUN = strawberry.enum_value(
        "agent_run", description="An agent run; its latencyMs is the run's duration."
    )
    HTTP_REQUEST = strawberry.enum_value(
        "http_request", description="Another HTTP request through a gateway."
    )


@strawberry.enum(description="How a call ended.")
class EventStatus(Enum):
    SUCCESS = strawberry.enum_value("success", description="Completed.")
    ERROR = strawberry.enum_value("error", description="Failed.")
    BLOCKED = strawberry.enum_value("blocked", description="Stopped by a policy.")


@strawberry.enum(description="Class of error of a failed or blocked call.")
class ErrorType(Enum):
    RATE_LIMIT = strawberry.enum_value("rate_limit", description="Rate limited (HTTP 429).")
    INVALID_REQUEST = strawberry.enum_value(
        "invalid_request", description="Rejected as invalid (HTTP 400 and the like)."
    )
    TIMEOUT = strawberry.enum_value("timeout", description="Timed out.")
    AUTH_ERROR = strawberry.enum_value(
        "auth_error", description="Authentication or authorisation failed."
    )
    MODEL_ERROR = strawberry.enum_value("model_error", description="The model or provider failed.")
    POLICY_BLOCKED = strawberry.enum_value("policy_blocked", description="Blocked by a policy.")
    OTHER = strawberry.enum_value("other", description="Any other error.")


@strawberry.enum(description="Where an event's cost came from.")
class CostSource(Enum):
    PROVIDED = strawberry.enum_value("provided", description="The event brought its cost.")
    COMPUTED = strawberry.enum_value(
        "computed", description="Priced at ingest (price overrides, else genai-prices)."
    )
    UNPRICED = strawberry.enum_value(
        "unpriced", description="No price known for the model: cost 0, to be repriced."
    )


RangePreset: TypeAlias = Preset  # strawberry.enum below marks the class in place
strawberry.enum(
    RangePreset,
    name="RangePreset",
    description="Rolling windows end now; period-to-date ones start at the period's local start.",
)
describe_values(
    RangePreset,
    {
        "LAST_1H": "The last hour, ending now.",
        "LAST_24H": "The last 24 hours, ending now.",
        "LAST_7D": "The last 7 days (168 hours), ending now.",
        "LAST_30D": "The last 30 days, ending now.",
        "LAST_90D": "The last 90 days, ending now.",
        "TODAY": "Since local midnight.",
        "THIS_WEEK": "Since local Monday 00:00.",
        "THIS_MONTH": "Since the local first of the month.",
        "THIS_QUARTER": "Since the local start of the quarter.",
        "THIS_YEAR": "Since local January 1st.",
    },
)


@strawberry.input(description="A time window: a preset, or start and end; in an IANA time zone.")
class TimeRangeInput:
    preset: RangePreset | None = strawberry.field(
        default=None, description="A named window; or give start and end."
    )
    start: datetime | None = strawberry.field(default=None, description="Inclusive, with offset.")
    end: datetime | None = strawberry.field(default=None, description="Exclusive, with offset.")
    timezone: str = strawberry.field(
        default="UTC", description="IANA zone for day boundaries and buckets."
    )

    def resolve(self, now: datetime | None = None) -> TimeWindow:
        return resolve_window(self.preset, self.start, self.end, self.timezone, now)


@strawberry.input(description="Select events whose metadata has this key with this value.")
class MetadataFilterInput:
    key: str = strawberry.field(description="A key of the events' metadata object.")
    value: str = strawberry.field(description="Its value, compared as text.")


@strawberry.input(
    description="Lists mean any of; fields combine with AND. Groups mean their current members."
)
class EventFilter:
    providers: list[str] | None = strawberry.field(
        default=None, description="Any of these providers (openai, anthropic, ...)."
    )
    models: list[str] | None = strawberry.field(
        default=None, description="Any of these model names."
    )
    kinds: list[EventKind] | None = strawberry.field(
        default=None,
        description="Any of these event kinds; naming kinds also sets the kinds the "
        "overview's latency and TTFT figures cover (LLM calls otherwise).",
    )
    statuses: list[EventStatus] | None = strawberry.field(
        default=None, description="Any of these statuses."
    )
    error_types: list[ErrorType] | None = strawberry.field(
        default=None, description="Any of these error types."
    )
    users: list[str] | None = strawberry.field(
        default=None, description="Any of these end user ids."
    )
    groups: list[str] | None = strawberry.field(
        default=None, description="Any of these group ids: their current members' events."
    )
    departments: list[str] | None = strawberry.field(
        default=None,
        description="Any of these departments: events whose user had one of them when the "
        "event was stored.",
    )
    api_keys: list[str] | None = strawberry.field(
        default=None, description="Any of these aPI key ids of the callers."
    )
    callers: list[str] | None = strawberry.field(
        default=None, description="Any of these callers: an API key id, or ip:<address>."
    )
    caller_ips: list[str] | None = strawberry.field(
        default=None, description="Any of these client IP addresses."
    )
    agents: list[str] | None = strawberry.field(default=None, description="Any of these agent ids.")
    agent_instances: list[str] | None = strawberry.field(
        default=None, description="Any of these agent instance ids."
    )
    sessions: list[str] | None = strawberry.field(
        default=None, description="Any of these session ids."
    )
    traces: list[str] | None = strawberry.field(default=None, description="Any of these trace ids.")
    runs: list[str] | None = strawberry.field(default=None, description="Any of these run ids.")
    nodes: list[str] | None = strawberry.field(
        default=None, description="Any of these pipeline node names."
    )
    tools: list[str] | None = strawberry.field(default=None, description="Any of these tool names.")
    mcp_servers: list[str] | None = strawberry.field(
        default=None, description="Any of these mCP server names."
    )
    gateways: list[str] | None = strawberry.field(
        default=None, description="Any of these gateway names."
    )
    protocols: list[str] | None = strawberry.field(
        default=None, description="Any of these protocols."
    )
    request_types: list[str] | None = strawberry.field(
        default=None, description="Any of these request types (chat, embedding, ...)."
    )
    billing_modes: list[str] | None = strawberry.field(
        default=None, description="Any of these billing modes."
    )
    policies: list[str] | None = strawberry.field(
        default=None, description="Any of these policy ids that acted on the event."
    )
    cost_sources: list[CostSource] | None = strawberry.field(
        default=None, description="Any of these where the cost came from."
    )
    is_byok: bool | None = strawberry.field(
        default=None, description="true: only calls on the caller's own provider keys."
    )
    status_codes: list[int] | None = strawberry.field(
        default=None,
        description="Any of these HTTP status codes (e.g. 429, 500); events without a code "
        "never match.",
    )
    tags: list[str] | None = strawberry.field(default=None, description="Any of these tags.")
    metadata: list[MetadataFilterInput] | None = strawberry.field(
        default=None, description="All of these key/value pairs."
    )

    def to_spec(self) -> EventFilterSpec:
        def values(items: Sequence[str | Enum] | None) -> tuple[str, ...]:
            return tuple(i.value if isinstance(i, Enum) else i for i in items or ())

        return EventFilterSpec(
            providers=values(self.providers),
            models=values(self.models),
            kinds=values(self.kinds),
            statuses=values(self.statuses),
            error_types=values(self.error_types),
            users=values(self.users),
            groups=values(self.groups),
            departments=values(self.departments),
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
            status_codes=tuple(self.status_codes or ()),
            tags=values(self.tags),
            metadata=tuple(MetadataMatch(m.key, m.value) for m in self.metadata or ()),
        )


def filter_spec(value: EventFilter | None) -> EventFilterSpec:
    return value.to_spec() if value is not None else EventFilterSpec()


@strawberry.type(description="Relay page info; lists page forward with first/after.")
class PageInfo:
    has_next_page: bool = strawberry.field(description="More items follow this page.")
    end_cursor: str | None = strawberry.field(
        description="The last item's cursor: `after` for the next page; null on an empty page."
    )
    has_previous_page: bool = strawberry.field(description="This page was asked after a cursor.")
    start_cursor: str | None = strawberry.field(description="The first item's cursor.")

    @classmethod
    def of(cls, cursors: Sequence[str], has_next_page: bool, after: str | None) -> PageInfo:
        """The page info of a forward page with these cursors, asked for after `after`."""
        return cls(
            has_next_page=has_next_page,
            end_cursor=cursors[-1] if cursors else None,
            has_previous_page=after is not None,
            start_cursor=cursors[0] if cursors else None,
        )


# Arguments shared by many root fields, described once.
RangeArg = Annotated[
    TimeRangeInput,
    strawberry.argument(description="The window (a preset, or start and end) and its time zone."),
]
OptionalRangeArg = Annotated[
    TimeRangeInput | None,
    strawberry.argument(description="The window and its time zone; null: the field's default."),
]
FilterArg = Annotated[
    EventFilter | None,
    strawberry.argument(description="Which events count; null: every event of the workspace."),
]
FirstArg = Annotated[
    int, strawberry.argument(description="Page size: items to return (at most 100).")
]
AfterArg = Annotated[
    str | None,
    strawberry.argument(description="The endCursor of the previous page; null: the first page."),
]
DescendingArg = Annotated[
    bool, strawberry.argument(description="Largest first (false: smallest first).")
]
IdArg = Annotated[strawberry.ID, strawberry.argument(description="The object's id.")]
