"""The request log: `requests` (a connection, newest first) and `request(id)`."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from tallyql.auth.principal import Permission
from tallyql.engine import request_log
from tallyql.engine.query.filters import EventFilterSpec
from tallyql.engine.query.timerange import TimeWindow
from tallyql.schema.base.common import (
    AfterArg,
    CostSource,
    ErrorType,
    EventKind,
    EventStatus,
    FilterArg,
    FirstArg,
    IdArg,
    OptionalRangeArg,
    PageInfo,
    filter_spec,
)
from tallyql.schema.base.context import TallyInfo
from tallyql.schema.base.described import event_field
from tallyql.schema.base.scalars import JSON, Long
from tallyql.schema.base.usage import token_kinds_of

if TYPE_CHECKING:
    from tallyql.schema.directory import User
    from tallyql.schema.sessions import Session


@strawberry.type(description="A request or response body stored with an event.")
class Payload:
    request: JSON | None = strawberry.field(description="The request body as sent; null if none.")
    response: JSON | None = strawberry.field(description="The response body; null if none.")


@strawberry.type(description="One event of the request log.")
class Request:
    id: strawberry.ID = event_field("id")
    timestamp: datetime = event_field("timestamp")
    kind: EventKind = event_field("kind")
    status: EventStatus = event_field("status")
    status_code: int | None = event_field("status_code")
    error_type: ErrorType | None = event_field("error_type")
    error_message: str | None = event_field("error_message")
    policy_id: str | None = event_field("policy_id")
    policy_name: str | None = event_field("policy_name")
    policy_description: str | None = event_field("policy_description")
    user_id: str | None = event_field("user_id")
    api_key_id: str | None = event_field("api_key_id")
    caller_ip: str | None = event_field("caller_ip")
    agent_id: str | None = event_field("agent_id")
    agent_instance_id: str | None = event_field("agent_instance_id")
    session_id: str | None = event_field("session_id")
    trace_id: str | None = event_field("trace_id")
    parent_id: str | None = event_field("parent_id")
    run_id: str | None = event_field("run_id")
    node: str | None = event_field("node")
    provider: str | None = event_field("provider")
    model: str | None = event_field("model")
    tool: str | None = event_field("tool")
    mcp_server: str | None = event_field("mcp_server")
    gateway: str | None = event_field("gateway")
    protocol: str | None = event_field("protocol")
    request_type: str | None = event_field("request_type")
    billing_mode: str | None = event_field("billing_mode")
    is_byok: bool = event_field("is_byok")
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
    cost_source: CostSource = strawberry.field(description="Where costUsd came from.")
    latency_ms: float | None = event_field("latency_ms")
    ttft_ms: float | None = event_field("ttft_ms")
    request_bytes: Long | None = event_field("request_bytes")
    response_bytes: Long | None = event_field("response_bytes")
    tags: list[str] = event_field("tags")
    metadata: JSON = event_field("metadata")
    received_at: datetime = strawberry.field(description="When the server received the event.")
    department: str | None = strawberry.field(
        description="The department (cost centre) the event's user had when it was stored; "
        "null without a user or when the user had none."
    )
    has_payload: bool = strawberry.field(description="A request or response body was stored.")

    @strawberry.field(description="Request and response bodies, when the event carried them.")
    async def payload(self, info: TallyInfo) -> Payload | None:
        if not self.has_payload:
            return None
        found = await info.context.payload_loader.load(str(self.id))
        return Payload(request=found[0], response=found[1]) if found else None

    @strawberry.field(description="The event's user, when the directory knows them.")
    async def user(
        self, info: TallyInfo
    ) -> Annotated[User, strawberry.lazy("tallyql.schema.directory")] | None:
        from tallyql.schema.directory import load_user

        return await load_user(info, self.user_id)

    @strawberry.field(description="The session the event belongs to.")
    async def session(
        self, info: TallyInfo
    ) -> Annotated[Session, strawberry.lazy("tallyql.schema.sessions")] | None:
        from tallyql.schema.sessions import load_session

        return await load_session(info, self.session_id)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Request:
        return cls(
            id=strawberry.ID(row["id"]),
            timestamp=row["ts"],
            kind=EventKind(row["kind"]),
            status=EventStatus(row["status"]),
            status_code=row["status_code"],
            error_type=ErrorType(row["error_type"]) if row["error_type"] else None,
            error_message=row["error_message"],
            policy_id=row["policy_id"],
            policy_name=row["policy_name"],
            policy_description=row["policy_description"],
            user_id=row["user_id"],
            api_key_id=row["api_key_id"],
            caller_ip=row["caller_ip"],
            agent_id=row["agent_id"],
            agent_instance_id=row["agent_instance_id"],
            session_id=row["session_id"],
            trace_id=row["trace_id"],
            parent_id=row["parent_id"],
            run_id=row["run_id"],
            node=row["node"],
            provider=row["provider"],
            model=row["model"],
            tool=row["tool"],
            mcp_server=row["mcp_server"],
            gateway=row["gateway"],
            protocol=row["protocol"],
            request_type=row["request_type"],
            billing_mode=row["billing_mode"],
            is_byok=bool(row["is_byok"]),
            **token_kinds_of(row),
            cost_source=CostSource(row["cost_source"]),
            latency_ms=row["latency_ms"],
            ttft_ms=row["ttft_ms"],
            request_bytes=row["request_bytes"],
            response_bytes=row["response_bytes"],
            tags=list(row["tags"] or []),
            metadata=row["metadata"],
            received_at=row["received_at"],
            department=row["department"],
            has_payload=bool(row["has_payload"]),
        )


@strawberry.type(description="An event with its cursor.")
class RequestEdge:
    cursor: str = strawberry.field(description="Opaque; pass as `after` to page on from here.")
    node: Request = strawberry.field(description="The event.")


@strawberry.type(description="A page of the request log, newest first.")
class RequestConnection:
    edges: list[RequestEdge] = strawberry.field(description="This page's events with cursors.")
    page_info: PageInfo = strawberry.field(description="Whether more pages follow, and cursors.")
    _workspace_id: strawberry.Private[int]
    _window: strawberry.Private[TimeWindow | None]
    _filter: strawberry.Private[EventFilterSpec]

    @strawberry.field(description="This page's events, without cursors.")
    def nodes(self) -> list[Request]:
        return [edge.node for edge in self.edges]

    @strawberry.field(description="Events matching the range and filter (counted on request).")
    async def total_count(self, info: TallyInfo) -> Long:
        counted = await request_log.count_requests(
            info.context.services.db, self._workspace_id, self._window, self._filter
        )
        if info.context.explain:
            info.context.plans.extend(counted.plans)
        return counted.count


async def request_page(
    info: TallyInfo,
    workspace_id: int,
    window: TimeWindow | None,
    spec: EventFilterSpec,
    first: int,
    after: str | None,
) -> RequestConnection:
    """One page of the request log as a connection (for `requests` and a session's)."""
    page = await request_log.list_requests(
        info.context.services.db, workspace_id, window, spec, first, after
    )
    edges = [RequestEdge(cursor=page.cursor(r), node=Request.from_row(r)) for r in page.rows]
    return RequestConnection(
        edges=edges,
        page_info=PageInfo.of([e.cursor for e in edges], page.has_next_page, after),
        _workspace_id=workspace_id,
        _window=window,
        _filter=spec,
    )


@strawberry.type
class RequestQuery:
    @strawberry.field(description="The request log, newest first, with keyset cursors.")
    async def requests(
        self,
        info: TallyInfo,
        range: OptionalRangeArg = None,
        filter: FilterArg = None,
        first: FirstArg = 50,
        after: AfterArg = None,
    ) -> RequestConnection:
        principal = info.context.require(Permission.READ)
        window = range.resolve() if range is not None else None
        spec = filter_spec(filter)
        return await request_page(info, principal.workspace_id, window, spec, first, after)

    @strawberry.field(description="One event of the request log, with its payloads.")
    async def request(self, info: TallyInfo, id: IdArg) -> Request | None:
        principal = info.context.require(Permission.READ)
        row = await request_log.get_request(info.context.services.db, principal.workspace_id, id)
        return Request.from_row(row) if row else None
