"""`sessions`, `session(id)` and `sessionStats`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, TypeAlias

import strawberry

from tallyql.auth.principal import Permission
from tallyql.engine import sessions as engine
from tallyql.engine.query.filters import EventFilterSpec
from tallyql.engine.query.timerange import TimeWindow
from tallyql.engine.sessions import SessionSpan
from tallyql.schema.base import loaders
from tallyql.schema.base.common import (
    AfterArg,
    DescendingArg,
    FilterArg,
    FirstArg,
    IdArg,
    OptionalRangeArg,
    PageInfo,
    RangeArg,
    TimeRangeInput,
    filter_spec,
)
from tallyql.schema.base.context import TallyInfo
from tallyql.schema.base.described import describe_values
from tallyql.schema.base.errors import BadInput
from tallyql.schema.base.scalars import Long
from tallyql.schema.base.usage import TokenKinds, token_kinds_of
from tallyql.schema.directory import User, load_user
from tallyql.schema.requests import RequestConnection, request_page
from tallyql.schema.sessions_types import (
    Baseline,
    SessionComparison,
    SessionModel,
    SessionStats,
    SessionTimeline,
    TokenShare,
    default_baseline,
    token_mix,
)
from tallyql.storage.types import to_micros

SessionOrder: TypeAlias = engine.SessionOrder  # strawberry.enum below marks the class in place
strawberry.enum(
    SessionOrder,
    name="SessionOrder",
    description="How to order sessions.",
)
describe_values(
    SessionOrder,
    {
        "COST": "By cost in USD.",
        "TOKENS": "By input plus output tokens.",
        "RECENT": "By last activity.",
        "DURATION": "By duration (first to last event).",
        "REQUESTS": "By events (count).",
    },
)


@strawberry.type(description="A conversation or agent session, with totals over its life.")
class Session(TokenKinds):
    id: strawberry.ID = strawberry.field(description="The session id sent with its events.")
    user_id: str | None = strawberry.field(description="The end user sent with its events.")
    agent_id: str | None = strawberry.field(description="The agent sent with its events.")
    first_timestamp: datetime = strawberry.field(description="Its first event's timestamp.")
    last_timestamp: datetime = strawberry.field(description="Its last event's timestamp.")
    duration_ms: float = strawberry.field(
        description="From the first to the last event's timestamp, in ms."
    )
    request_count: Long = strawberry.field(description="Events of every kind (count).")
    error_count: Long = strawberry.field(description="Events with status error (count).")
    _row: strawberry.Private[dict[str, Any]]
    _baseline: strawberry.Private[Baseline | None]

    @classmethod
    def from_row(cls, row: dict[str, Any], baseline: Baseline | None = None) -> Session:
        return cls(
            id=strawberry.ID(row["id"]),
            user_id=row["user_id"],
            agent_id=row["agent_id"],
            first_timestamp=row["first_ts"],
            last_timestamp=row["last_ts"],
            duration_ms=(to_micros(row["last_ts"]) - to_micros(row["first_ts"])) / 1000,
            request_count=row["requests"],
            error_count=row["errors"],
            **token_kinds_of(row),
            _row=row,
            _baseline=baseline,
        )

    @strawberry.field(description="The session's user, when the directory knows them.")
    async def user(self, info: TallyInfo) -> User | None:
        return await load_user(info, self.user_id)

    def _span(self) -> SessionSpan:
        return (str(self.id), self.first_timestamp, self.last_timestamp)

    async def _latencies(self, info: TallyInfo) -> list[dict[str, Any]]:
        return await loaders.session_latencies(info.context).load(self._span())

    @strawberry.field(
        description="Per model: tokens, cost and average call latency, costliest first."
    )
    async def models(self, info: TallyInfo) -> list[SessionModel]:
        rows = await loaders.session_models(info.context).load(str(self.id))
        return [SessionModel.from_row(r, self._span()) for r in rows]

    @strawberry.field(
        description="Mean latency in ms of the session's LLM calls (kind llm_call) that report "
        "one, as the overview's latency; null without any. Agent runs are in avgRunDurationMs."
    )
    async def avg_latency_ms(self, info: TallyInfo) -> float | None:
        return _mean(await self._latencies(info), "llm_call")

    @strawberry.field(
        description="Mean duration in ms of the session's agent runs (kind agent_run); null "
        "without runs."
    )
    async def avg_run_duration_ms(self, info: TallyInfo) -> float | None:
        return _mean(await self._latencies(info), "agent_run")

    @strawberry.field(description="Tokens by kind; the kinds add up to input + output.")
    def token_mix(self) -> list[TokenShare]:
        return token_mix(self._row)

    @strawberry.field(description="Tokens and cost over the session's lifespan.")
    async def timeline(
        self,
        info: TallyInfo,
        buckets: Annotated[
            int, strawberry.argument(description="Equal buckets to cut the lifespan into (1-200).")
        ] = 20,
    ) -> SessionTimeline:
        if not 1 <= buckets <= 200:
            raise BadInput("buckets must be between 1 and 200")
        principal = info.context.require(Permission.READ)
        timeline = await engine.session_timeline(
            info.context.services.db, principal.workspace_id, self._row, buckets
        )
        return SessionTimeline.of(timeline)

    @strawberry.field(description="The session's events, newest first.")
    async def requests(
        self, info: TallyInfo, first: FirstArg = 50, after: AfterArg = None
    ) -> RequestConnection:
        principal = info.context.require(Permission.READ)
        spec = EventFilterSpec(sessions=(str(self.id),))
        return await request_page(info, principal.workspace_id, None, spec, first, after)

    @strawberry.field(
        description="Against the median session of the same range and filter; null without "
        "a baseline (fewer than 2 other sessions)."
    )
    async def comparison(self, info: TallyInfo) -> SessionComparison | None:
        if self._baseline is None:
            principal = info.context.require(Permission.READ)
            db = info.context.services.db
            self._baseline = default_baseline(info.context, db, principal.workspace_id)
        return await self._baseline.compare(self._row)


def _mean(rows: list[dict[str, Any]], kind: str) -> float | None:
    """Mean latency of one kind's events (agent runs: their duration)."""
    kept = [r for r in rows if r["kind"] == kind]
    count = sum(r["latency_count"] for r in kept)
    return sum(r["latency_ms_sum"] for r in kept) / count if count else None


async def load_session(info: TallyInfo, session_id: str | None) -> Session | None:
    """A session by id through the request's loader (None when absent)."""
    if not session_id:
        return None
    row = await loaders.session_rows(info.context).load(session_id)
    return Session.from_row(row) if row else None


@strawberry.type(description="A session with its cursor.")
class SessionEdge:
    cursor: str = strawberry.field(description="Opaque; pass as `after` to page on from here.")
    node: Session = strawberry.field(description="The session.")


@strawberry.type(description="Sessions overlapping the range and matching the filter.")
class SessionConnection:
    edges: list[SessionEdge] = strawberry.field(description="This page's sessions with cursors.")
    page_info: PageInfo = strawberry.field(description="Whether more pages follow, and cursors.")
    _baseline: strawberry.Private[Baseline]

    @strawberry.field(description="This page's sessions, without cursors.")
    def nodes(self) -> list[Session]:
        return [e.node for e in self.edges]

    @strawberry.field(description="Sessions in the set (counted on request).")
    async def total_count(self) -> int:
        b = self._baseline
        return await engine.count_sessions(b.db, b.workspace_id, b.window, b.spec)


def _window(range: TimeRangeInput | None) -> TimeWindow | None:
    return range.resolve() if range is not None else None


@strawberry.type
class SessionQuery:
    @strawberry.field(description="Sessions active in the range, best first, with cursors.")
    async def sessions(
        self,
        info: TallyInfo,
        range: RangeArg,
        filter: FilterArg = None,
        order_by: Annotated[
            SessionOrder,
            strawberry.argument(description="What ranks the sessions."),
        ] = engine.SessionOrder.COST,
        descending: DescendingArg = True,
        first: FirstArg = 10,
        after: AfterArg = None,
    ) -> SessionConnection:
        principal = info.context.require(Permission.READ)
        window, spec = range.resolve(), filter_spec(filter)
        db = info.context.services.db
        page = await engine.list_sessions(
            db, principal.workspace_id, window, spec, order_by, descending, first, after
        )
        members = frozenset(r["id"] for r in page.rows)
        baseline = Baseline(db, principal.workspace_id, window, spec, members)
        edges = [SessionEdge(cursor=page.cursor(r), node=Session.from_row(r, baseline))
                 for r in page.rows]  # fmt: skip
        return SessionConnection(
            edges=edges,
            page_info=PageInfo.of([e.cursor for e in edges], page.has_next_page, after),
            _baseline=baseline,
        )

    @strawberry.field(
        description="One session; range and filter choose the sessions it is compared with "
        "(default: every session of the workspace)."
    )
    async def session(
        self,
        info: TallyInfo,
        id: IdArg,
        range: OptionalRangeArg = None,
        filter: FilterArg = None,
    ) -> Session | None:
        principal = info.context.require(Permission.READ)
        session = await load_session(info, str(id))
        if session is not None:
            db, window = info.context.services.db, _window(range)
            session._baseline = Baseline(db, principal.workspace_id, window, filter_spec(filter))
        return session

    @strawberry.field(description="Exact P50, average and P95 of the set's sessions.")
    async def session_stats(
        self, info: TallyInfo, range: RangeArg, filter: FilterArg = None
    ) -> SessionStats:
        principal = info.context.require(Permission.READ)
        result = await engine.session_stats(
            info.context.services.db,
            principal.workspace_id,
            range.resolve(),
            filter_spec(filter),
            meter=info.context.meter,
        )
        return SessionStats.of(result)
