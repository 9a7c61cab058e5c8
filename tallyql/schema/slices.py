"""`toolUsage` and `security`: tool calls and blocked calls, each from every side. Every part
is computed only when selected, through the engine (and so from rollups)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import strawberry

from tallyql.auth.principal import Permission
from tallyql.engine.policies import policy_descriptions
from tallyql.engine.query.buckets import Granularity as EngineGranularity
from tallyql.engine.query.registry import Metric
from tallyql.engine.ranking import Values
from tallyql.engine.slices import Slice
from tallyql.schema.analytics import Granularity, Series, TimeSeries
from tallyql.schema.base.common import AfterArg, FilterArg, FirstArg, RangeArg
from tallyql.schema.base.context import TallyInfo
from tallyql.schema.base.pages import Connection, ranked_connection
from tallyql.schema.base.scalars import Long
from tallyql.schema.directory import User, load_user


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


def _n(values: Values, metric: Metric) -> int:
    """A count (0 when absent), as an exact integer."""
    return int(values.get(metric) or 0)


@strawberry.type(description="A tool (with the MCP server that owns it) in this view.")
class ToolRow:
    tool: str = strawberry.field(description="The tool's name.")
    mcp_server: str | None = strawberry.field(description="The MCP server that owns it.")
    calls: Long = strawberry.field(
        description="Tool calls in this view (executions, or blocked calls; count)."
    )
    errors: Long = strawberry.field(description="Calls with status error (count).")
    error_rate: float | None = strawberry.field(description="Errors / calls, 0 to 1.")
    avg_latency_ms: float | None = strawberry.field(
        description="Mean latency in ms of the tool calls that report one."
    )


@strawberry.type(description="An agent instance, its agent and its busiest user.")
class AgentInstanceRow:
    agent_instance_id: str = strawberry.field(description="The agent instance's id.")
    agent_id: str | None = strawberry.field(description="The agent it is an instance of.")
    user_id: str | None = strawberry.field(description="The user with the most calls here.")
    users: int = strawberry.field(description="Distinct users of the instance in this view.")
    calls: Long = strawberry.field(description="Tool calls of the instance in this view (count).")
    errors: Long = strawberry.field(description="Calls with status error (count).")
    error_rate: float | None = strawberry.field(description="Errors / calls, 0 to 1.")

    @strawberry.field(description="The directory's entry for userId; null when unknown.")
    async def user(self, info: TallyInfo) -> User | None:
        return await load_user(info, self.user_id)


@strawberry.type(description="An end user in this view.")
class UserRow:
    user_id: str = strawberry.field(description="The user's id as sent with events.")
    calls: Long = strawberry.field(description="Tool calls of the user in this view (count).")
    errors: Long = strawberry.field(description="Calls with status error (count).")
    error_rate: float | None = strawberry.field(description="Errors / calls, 0 to 1.")

    @strawberry.field(description="The directory's entry for userId; null when unknown.")
    async def user(self, info: TallyInfo) -> User | None:
        return await load_user(info, self.user_id)


@strawberry.type(description="An MCP server in this view.")
class McpServerRow:
    mcp_server: str = strawberry.field(description="The MCP server's name.")
    tools: int = strawberry.field(description="Distinct tools called on the server (count).")
    calls: Long = strawberry.field(description="Tool calls to the server (count).")
    errors: Long = strawberry.field(description="Calls with status error (count).")
    error_rate: float | None = strawberry.field(description="Errors / calls, 0 to 1.")
    avg_latency_ms: float | None = strawberry.field(
        description="Mean latency in ms of its tool calls that report one."
    )


@strawberry.type(description="A policy as it was named when it blocked calls.")
class PolicyRow:
    policy_id: str = strawberry.field(description="The policy's id.")
    policy_name: str | None = strawberry.field(description="Its name as recorded on the events.")
    blocked_calls: Long = strawberry.field(description="Calls it blocked (count).")
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

    async def _count(self, metric: Metric) -> int:
        return int(await self._total(metric) or 0)

    @strawberry.field(description="Tool calls (count).")
    async def executions(self) -> Long:
        return Long(await self._count(Metric.REQUESTS))

    @strawberry.field(description="Tool calls with status error (count).")
    async def errors(self) -> Long:
        return Long(await self._count(Metric.ERRORS))

    @strawberry.field(description="Errors / tool calls, 0 to 1; null without calls.")
    async def error_rate(self) -> float | None:
        return await self._total(Metric.ERROR_RATE)

    @strawberry.field(description="Tool calls blocked by a policy (count).")
    async def blocked(self) -> Long:
        return Long(await self._count(Metric.BLOCKED))

    @strawberry.field(description="Mean latency in ms of the tool calls that report one.")
    async def avg_latency_ms(self) -> float | None:
        return await self._total(Metric.AVG_LATENCY_MS)

    @strawberry.field(description="Distinct tools called (count).")
    async def unique_tools(self) -> int:
        return await self._count(Metric.UNIQUE_TOOLS)

    @strawberry.field(description="Distinct agent instances that called tools (count).")
    async def active_agent_instances(self) -> int:
        return await self._count(Metric.UNIQUE_AGENT_INSTANCES)

    @strawberry.field(description="Distinct end users whose calls used tools (count).")
    async def active_users(self) -> int:
        return await self._count(Metric.UNIQUE_USERS)

    @strawberry.field(description="Distinct MCP servers called (count).")
    async def mcp_servers(self) -> int:
        return await self._count(Metric.UNIQUE_MCP_SERVERS)

    @strawberry.field(description="Executions over time (AUTO: hourly up to two days).")
    async def executions_over_time(
        self,
        granularity: Annotated[
            Granularity,
            strawberry.argument(
                description="Bucket size (AUTO: hourly up to two days, else daily)."
            ),
        ] = EngineGranularity.AUTO,
    ) -> TimeSeries:
        return await _over_time(self._slice, granularity)

    @strawberry.field(
        description="24 counts: tool calls by local hour of day (index 0 is 00:00-01:00)."
    )
    async def hourly_distribution(self) -> list[Long]:
        return [Long(int(v or 0)) for v in await self._slice.hourly()]

    @strawberry.field(description="Tools by tool calls, busiest first.")
    async def top_tools(self, first: FirstArg = 10, after: AfterArg = None) -> Connection[ToolRow]:
        return ranked_connection(await self._slice.tools(first, after), after, _tool)

    @strawberry.field(description="Agent instances by tool calls, busiest first.")
    async def top_agent_instances(
        self, first: FirstArg = 10, after: AfterArg = None
    ) -> Connection[AgentInstanceRow]:
        return await _instances(self._slice, first, after)

    @strawberry.field(description="End users by tool calls, busiest first.")
    async def top_users(self, first: FirstArg = 10, after: AfterArg = None) -> Connection[UserRow]:
        return ranked_connection(await self._slice.users(first, after), after, _user)

    @strawberry.field(description="MCP servers by tool calls, busiest first.")
    async def top_mcp_servers(
        self, first: FirstArg = 10, after: AfterArg = None
    ) -> Connection[McpServerRow]:
        return ranked_connection(await self._slice.mcp_servers(first, after), after, _server)


@strawberry.type(description="Calls blocked by policies (status blocked) of the range and filter.")
class SecurityOverview:
    _slice: strawberry.Private[Slice]
    _totals: strawberry.Private[Once]

    @strawberry.field(description="Calls blocked by a policy (count).")
    async def blocked_calls(self) -> Long:
        values: Values = await self._totals.get()
        return Long(_n(values, Metric.BLOCKED))

    @strawberry.field(description="Every call of the range and filter, blocked or not (count).")
    async def total_requests(self) -> Long:
        values: Values = await self._totals.get()
        return Long(_n(values, Metric.REQUESTS))

    @strawberry.field(description="Blocked calls / all calls (0 to 1).")
    async def blocked_rate(self) -> float | None:
        values: Values = await self._totals.get()
        total = values.get(Metric.REQUESTS) or 0.0
        return (values.get(Metric.BLOCKED) or 0.0) / total if total else None

    @strawberry.field(
        description="Blocked calls over time (REQUESTS of blocked events per bucket)."
    )
    async def blocked_over_time(
        self,
        granularity: Annotated[
            Granularity,
            strawberry.argument(
                description="Bucket size (AUTO: hourly up to two days, else daily)."
            ),
        ] = EngineGranularity.AUTO,
    ) -> TimeSeries:
        return await _over_time(self._slice, granularity)

    @strawberry.field(description="Tools by blocked calls.")
    async def top_blocked_tools(
        self, first: FirstArg = 10, after: AfterArg = None
    ) -> Connection[ToolRow]:
        return ranked_connection(await self._slice.tools(first, after), after, _tool)

    @strawberry.field(description="Agent instances by blocked calls.")
    async def top_blocked_agent_instances(
        self, first: FirstArg = 10, after: AfterArg = None
    ) -> Connection[AgentInstanceRow]:
        return await _instances(self._slice, first, after)

    @strawberry.field(description="End users by blocked calls.")
    async def top_blocked_users(
        self, first: FirstArg = 10, after: AfterArg = None
    ) -> Connection[UserRow]:
        return ranked_connection(await self._slice.users(first, after), after, _user)

    @strawberry.field(description="MCP servers by blocked calls.")
    async def top_blocked_mcp_servers(
        self, first: FirstArg = 10, after: AfterArg = None
    ) -> Connection[McpServerRow]:
        return ranked_connection(await self._slice.mcp_servers(first, after), after, _server)

    @strawberry.field(description="Policies by blocked calls, with their names as recorded.")
    async def top_policies(
        self, first: FirstArg = 10, after: AfterArg = None
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
        self, info: TallyInfo, range: RangeArg, filter: FilterArg = None
    ) -> ToolUsage:
        s = Slice.tool_calls(info.context.asker(range, filter))
        return ToolUsage(_slice=s, _totals=Once(lambda: s.totals(TOOL_TOTALS)))

    @strawberry.field(description="Blocked calls and what blocked them.")
    async def security(
        self, info: TallyInfo, range: RangeArg, filter: FilterArg = None
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
