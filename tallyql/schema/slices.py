"""`toolUsage` and `security`: tool calls and blocked calls, each from every side. Every part
is computed only when selected, through the engine (and so from rollups)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import strawberry

from tallyql.auth.principal import Permission
from tallyql.engine.buckets import Granularity as EngineGranularity
from tallyql.engine.policies import policy_descriptions
from tallyql.engine.ranking import Values
from tallyql.engine.registry import Metric
from tallyql.engine.slices import Slice
from tallyql.schema.analytics import Granularity, Series, TimeSeries
from tallyql.schema.common import EventFilter, TimeRangeInput
from tallyql.schema.context import TallyInfo
from tallyql.schema.directory import User, load_user
from tallyql.schema.pages import Connection, ranked_connection


class Once:
    """An async computation run at most once, however many fields await it."""

    def __init__(self, compute: Callable[[], Awaitable[Any]]) -> None:
        self._compute = compute
        self._lock = asyncio.Lock()
        self._done = False
        self._value: Any = None

    async def get(self) -> Any:
        async with self._lock:
            if not self._done:
                self._value = await self._compute()
                self._done = True
            return self._value


def _n(values: Values, metric: Metric) -> float:
    return values.get(metric) or 0.0


@strawberry.type(description="A tool (with the MCP server that owns it) in this view.")
class ToolRow:
    tool: str
    mcp_server: str | None
    calls: float = strawberry.field(description="Calls in this view (executions, or blocked).")
    errors: float
    error_rate: float | None
    avg_latency_ms: float | None


@strawberry.type(description="An agent instance, its agent and its busiest user.")
class AgentInstanceRow:
    agent_instance_id: str
    agent_id: str | None
    user_id: str | None = strawberry.field(description="The user with the most calls here.")
    users: int = strawberry.field(description="Distinct users of the instance in this view.")
    calls: float
    errors: float
    error_rate: float | None

    @strawberry.field
    async def user(self, info: TallyInfo) -> User | None:
        return await load_user(info, self.user_id)


@strawberry.type
class UserRow:
    user_id: str
    calls: float
    errors: float
    error_rate: float | None

    @strawberry.field
    async def user(self, info: TallyInfo) -> User | None:
        return await load_user(info, self.user_id)


@strawberry.type
class McpServerRow:
    mcp_server: str
    tools: float = strawberry.field(description="Distinct tools called on the server.")
    calls: float
    errors: float
    error_rate: float | None
    avg_latency_ms: float | None


@strawberry.type(description="A policy as it was named when it blocked calls.")
class PolicyRow:
    policy_id: str
    policy_name: str | None
    blocked_calls: float
    _slice: strawberry.Private[Slice]

    @strawberry.field(description="The description recorded with its latest blocked call.")
    async def policy_description(self, info: TallyInfo) -> str | None:
        asker = self._slice.asker
        workspace_id = info.context.require(Permission.READ).workspace_id

        async def load(pairs: list[tuple[str, str | None]]) -> list[str | None]:
            found = await policy_descriptions(asker.db, workspace_id, asker.window, pairs)
            return [found[p] for p in pairs]

        loader = info.context.loader(("policy_descriptions", id(asker)), load)
        return await loader.load((self.policy_id, self.policy_name))


def _tool(keys: tuple[Any, ...], v: Values) -> ToolRow:
    return ToolRow(
        tool=keys[0],
        mcp_server=keys[1],
        calls=_n(v, Metric.REQUESTS),
        errors=_n(v, Metric.ERRORS),
        error_rate=v.get(Metric.ERROR_RATE),
        avg_latency_ms=v.get(Metric.AVG_LATENCY_MS),
    )


def _user(keys: tuple[Any, ...], v: Values) -> UserRow:
    return UserRow(
        user_id=keys[0],
        calls=_n(v, Metric.REQUESTS),
        errors=_n(v, Metric.ERRORS),
        error_rate=v.get(Metric.ERROR_RATE),
    )


def _server(keys: tuple[Any, ...], v: Values) -> McpServerRow:
    return McpServerRow(
        mcp_server=keys[0],
        tools=_n(v, Metric.UNIQUE_TOOLS),
        calls=_n(v, Metric.REQUESTS),
        errors=_n(v, Metric.ERRORS),
        error_rate=v.get(Metric.ERROR_RATE),
        avg_latency_ms=v.get(Metric.AVG_LATENCY_MS),
    )


async def _instances(s: Slice, first: int, after: str | None) -> Connection[AgentInstanceRow]:
    page, users = await s.agent_instances(first, after)

    def make(keys: tuple[Any, ...], v: Values) -> AgentInstanceRow:
        top_user, count = users.get(keys[0], (None, 0))
        return AgentInstanceRow(
            agent_instance_id=keys[0],
            agent_id=keys[1],
            user_id=top_user,
            users=count,
            calls=_n(v, Metric.REQUESTS),
            errors=_n(v, Metric.ERRORS),
            error_rate=v.get(Metric.ERROR_RATE),
        )

    return ranked_connection(page, after, make)


async def _over_time(s: Slice, granularity: EngineGranularity) -> TimeSeries:
    result = await s.over_time(granularity)
    return TimeSeries(
        granularity=result.granularity,
        buckets=result.buckets,
        series=[
            Series(metric=x.metric, group=None, is_other=False, values=x.values, previous=None)
            for x in result.series
        ],
    )


TOOL_TOTALS = (
    Metric.REQUESTS,
    Metric.ERRORS,
    Metric.ERROR_RATE,
    Metric.BLOCKED,
    Metric.AVG_LATENCY_MS,
    Metric.UNIQUE_TOOLS,
    Metric.UNIQUE_AGENT_INSTANCES,
    Metric.UNIQUE_USERS,
    Metric.UNIQUE_MCP_SERVERS,
)


@strawberry.type(description="Tool calls (kind tool_call) of the range and filter.")
class ToolUsage:
    _slice: strawberry.Private[Slice]
    _totals: strawberry.Private[Once]

    async def _total(self, metric: Metric) -> float | None:
        values: Values = await self._totals.get()
        return values.get(metric)

    @strawberry.field(description="Tool calls.")
    async def executions(self) -> float:
        return await self._total(Metric.REQUESTS) or 0.0

    @strawberry.field
    async def errors(self) -> float:
        return await self._total(Metric.ERRORS) or 0.0

    @strawberry.field
    async def error_rate(self) -> float | None:
        return await self._total(Metric.ERROR_RATE)

    @strawberry.field(description="Tool calls blocked by a policy.")
    async def blocked(self) -> float:
        return await self._total(Metric.BLOCKED) or 0.0

    @strawberry.field
    async def avg_latency_ms(self) -> float | None:
        return await self._total(Metric.AVG_LATENCY_MS)

    @strawberry.field
    async def unique_tools(self) -> float:
        return await self._total(Metric.UNIQUE_TOOLS) or 0.0

    @strawberry.field
    async def active_agent_instances(self) -> float:
        return await self._total(Metric.UNIQUE_AGENT_INSTANCES) or 0.0

    @strawberry.field
    async def active_users(self) -> float:
        return await self._total(Metric.UNIQUE_USERS) or 0.0

    @strawberry.field
    async def mcp_servers(self) -> float:
        return await self._total(Metric.UNIQUE_MCP_SERVERS) or 0.0

    @strawberry.field(description="Executions over time (AUTO: hourly up to two days).")
    async def executions_over_time(
        self,
        granularity: Granularity = EngineGranularity.AUTO,  # type: ignore[valid-type]
    ) -> TimeSeries:
        return await _over_time(self._slice, granularity)

    @strawberry.field(description="24 values: executions by local hour of day.")
    async def hourly_distribution(self) -> list[float | None]:
        return await self._slice.hourly()

    @strawberry.field
    async def top_tools(self, first: int = 10, after: str | None = None) -> Connection[ToolRow]:
        return ranked_connection(await self._slice.tools(first, after), after, _tool)

    @strawberry.field
    async def top_agent_instances(
        self, first: int = 10, after: str | None = None
    ) -> Connection[AgentInstanceRow]:
        return await _instances(self._slice, first, after)

    @strawberry.field
    async def top_users(self, first: int = 10, after: str | None = None) -> Connection[UserRow]:
        return ranked_connection(await self._slice.users(first, after), after, _user)

    @strawberry.field
    async def top_mcp_servers(
        self, first: int = 10, after: str | None = None
    ) -> Connection[McpServerRow]:
        return ranked_connection(await self._slice.mcp_servers(first, after), after, _server)


@strawberry.type(description="Calls blocked by policies (status blocked) of the range and filter.")
class SecurityOverview:
    _slice: strawberry.Private[Slice]
    _totals: strawberry.Private[Once]

    @strawberry.field
    async def blocked_calls(self) -> float:
        values: Values = await self._totals.get()
        return values.get(Metric.BLOCKED) or 0.0

    @strawberry.field(description="Every call of the range and filter, blocked or not.")
    async def total_requests(self) -> float:
        values: Values = await self._totals.get()
        return values.get(Metric.REQUESTS) or 0.0

    @strawberry.field(description="Blocked calls / all calls (0 to 1).")
    async def blocked_rate(self) -> float | None:
        values: Values = await self._totals.get()
        total = values.get(Metric.REQUESTS) or 0.0
        return (values.get(Metric.BLOCKED) or 0.0) / total if total else None

    @strawberry.field
    async def blocked_over_time(
        self,
        granularity: Granularity = EngineGranularity.AUTO,  # type: ignore[valid-type]
    ) -> TimeSeries:
        return await _over_time(self._slice, granularity)

    @strawberry.field
    async def top_blocked_tools(
        self, first: int = 10, after: str | None = None
    ) -> Connection[ToolRow]:
        return ranked_connection(await self._slice.tools(first, after), after, _tool)

    @strawberry.field
    async def top_blocked_agent_instances(
        self, first: int = 10, after: str | None = None
    ) -> Connection[AgentInstanceRow]:
        return await _instances(self._slice, first, after)

    @strawberry.field
    async def top_blocked_users(
        self, first: int = 10, after: str | None = None
    ) -> Connection[UserRow]:
        return ranked_connection(await self._slice.users(first, after), after, _user)

    @strawberry.field
    async def top_blocked_mcp_servers(
        self, first: int = 10, after: str | None = None
    ) -> Connection[McpServerRow]:
        return ranked_connection(await self._slice.mcp_servers(first, after), after, _server)

    @strawberry.field(description="Policies by blocked calls, with their names as recorded.")
    async def top_policies(
        self, first: int = 10, after: str | None = None
    ) -> Connection[PolicyRow]:
        s = self._slice

        def make(keys: tuple[Any, ...], v: Values) -> PolicyRow:
            return PolicyRow(
                policy_id=keys[0],
                policy_name=keys[1],
                blocked_calls=_n(v, Metric.REQUESTS),
                _slice=s,
            )

        return ranked_connection(await s.policies(first, after), after, make)


@strawberry.type
class SlicesQuery:
    @strawberry.field(description="Tool executions, tools, agent instances, users, MCP servers.")
    async def tool_usage(
        self, info: TallyInfo, range: TimeRangeInput, filter: EventFilter | None = None
    ) -> ToolUsage:
        s = Slice.tool_calls(info.context.asker(range, filter))
        return ToolUsage(_slice=s, _totals=Once(lambda: s.totals(TOOL_TOTALS)))

    @strawberry.field(description="Blocked calls and what blocked them.")
    async def security(
        self, info: TallyInfo, range: TimeRangeInput, filter: EventFilter | None = None
    ) -> SecurityOverview:
        asker = info.context.asker(range, filter)
        s = Slice.blocked(asker)

        async def totals() -> Values:
            result = await asker.run((Metric.REQUESTS, Metric.BLOCKED))
            blocked = await s.totals((Metric.REQUESTS,))
            return {
                Metric.REQUESTS: result.value((0,), Metric.REQUESTS),
                Metric.BLOCKED: blocked[Metric.REQUESTS],
            }

        return SecurityOverview(_slice=s, _totals=Once(totals))
