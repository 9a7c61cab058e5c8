"""The request log: `requests` (a connection, newest first) and `request(id)`."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from tallyql.auth.principal import Permission
from tallyql.engine import request_log
from tallyql.engine.filters import EventFilterSpec
from tallyql.engine.timerange import TimeWindow
from tallyql.ingest.pricing import NANO_PER_USD
from tallyql.schema.common import (
    CostSource,
    ErrorType,
    EventFilter,
    EventKind,
    EventStatus,
    PageInfo,
    TimeRangeInput,
    filter_spec,
)
from tallyql.schema.context import TallyInfo
from tallyql.schema.scalars import JSON, Long

if TYPE_CHECKING:
    from tallyql.schema.directory import User
    from tallyql.schema.sessions import Session


@strawberry.type(description="A request or response body stored with an event.")
class Payload:
    request: JSON | None
    response: JSON | None


@strawberry.type(description="One event of the request log.")
class Request:
    id: strawberry.ID
    timestamp: datetime
    kind: EventKind
    status: EventStatus
    status_code: int | None
    error_type: ErrorType | None
    error_message: str | None
    policy_id: str | None
    policy_name: str | None
    policy_description: str | None
    user_id: str | None
    api_key_id: str | None
    caller_ip: str | None
    agent_id: str | None
    agent_instance_id: str | None
    session_id: str | None
    trace_id: str | None
    parent_id: str | None
    run_id: str | None
    node: str | None
    provider: str | None
    model: str | None
    tool: str | None
    mcp_server: str | None
    gateway: str | None
    protocol: str | None
    request_type: str | None
    billing_mode: str | None
    is_byok: bool
    input_tokens: Long
    output_tokens: Long
    cache_read_tokens: Long
    cache_write_tokens: Long
    reasoning_tokens: Long
    total_tokens: Long
    cost_usd: float
    cost_source: CostSource
    latency_ms: float | None
    ttft_ms: float | None
    request_bytes: Long | None
    response_bytes: Long | None
    tags: list[str]
    metadata: JSON
    received_at: datetime
    has_payload: bool

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
            input_tokens=row["input_tokens"],
            output_tokens=row["output_tokens"],
            cache_read_tokens=row["cache_read_tokens"],
            cache_write_tokens=row["cache_write_tokens"],
            reasoning_tokens=row["reasoning_tokens"],
            total_tokens=row["input_tokens"] + row["output_tokens"],
            cost_usd=row["cost_nanousd"] / NANO_PER_USD,
            cost_source=CostSource(row["cost_source"]),
            latency_ms=row["latency_ms"],
            ttft_ms=row["ttft_ms"],
            request_bytes=row["request_bytes"],
            response_bytes=row["response_bytes"],
            tags=list(row["tags"] or []),
            metadata=row["metadata"],
            received_at=row["received_at"],
            has_payload=bool(row["has_payload"]),
        )


@strawberry.type
class RequestEdge:
    cursor: str
    node: Request


@strawberry.type(description="A page of the request log, newest first.")
class RequestConnection:
    edges: list[RequestEdge]
    page_info: PageInfo
    _workspace_id: strawberry.Private[int]
    _window: strawberry.Private[TimeWindow | None]
    _filter: strawberry.Private[EventFilterSpec]

    @strawberry.field
    def nodes(self) -> list[Request]:
        return [edge.node for edge in self.edges]

    @strawberry.field(description="Events matching the range and filter (counted on request).")
    async def total_count(self, info: TallyInfo) -> int:
        return await request_log.count_requests(
            info.context.services.db, self._workspace_id, self._window, self._filter
        )


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
        range: TimeRangeInput | None = None,
        filter: EventFilter | None = None,
        first: int = 50,
        after: str | None = None,
    ) -> RequestConnection:
        principal = info.context.require(Permission.READ)
        window = range.resolve() if range is not None else None
        spec = filter_spec(filter)
        return await request_page(info, principal.workspace_id, window, spec, first, after)

    @strawberry.field(description="One event of the request log, with its payloads.")
    async def request(self, info: TallyInfo, id: strawberry.ID) -> Request | None:
        principal = info.context.require(Permission.READ)
        row = await request_log.get_request(info.context.services.db, principal.workspace_id, id)
        return Request.from_row(row) if row else None
