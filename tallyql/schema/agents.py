"""`agents` and `gateways`: per agent its runs, tokens, cost and pipeline nodes; per gateway
its traffic, callers, bandwidth and errors. Both through the engine's rollups."""

from __future__ import annotations

from typing import Any

import strawberry

from tallyql.engine import agents as engine_agents
from tallyql.engine import gateways as engine_gateways
from tallyql.engine.analytics import Asker
from tallyql.engine.ranking import Values
from tallyql.engine.registry import Metric
from tallyql.schema.common import EventFilter, TimeRangeInput
from tallyql.schema.context import TallyInfo
from tallyql.schema.pages import Connection, ranked_connection

AgentOrder = strawberry.enum(engine_agents.AgentOrder, name="AgentOrder")
GatewayOrder = strawberry.enum(
    engine_gateways.GatewayOrder,
    name="GatewayOrder",
    description="BANDWIDTH is request plus response bytes.",
)


@strawberry.type(description="A pipeline node of an agent.")
class AgentNode:
    node: str
    requests: float
    errors: float
    error_rate: float | None
    avg_latency_ms: float | None
    cost_usd: float


@strawberry.type(description="An agent over the range: runs (agent_run events) and all calls.")
class AgentStats:
    agent_id: str
    runs: float
    success_rate: float | None = strawberry.field(description="Share of runs that succeeded.")
    avg_run_duration_ms: float | None
    requests: float = strawberry.field(description="Every event of the agent, runs included.")
    errors: float
    input_tokens: float
    output_tokens: float
    total_tokens: float
    cost_usd: float
    instances: float = strawberry.field(description="Distinct agent instances.")
    _asker: strawberry.Private[Asker]

    @classmethod
    def of(cls, f: engine_agents.AgentFigures, asker: Asker) -> AgentStats:
        return cls(
            agent_id=f.agent_id,
            runs=f.runs,
            success_rate=f.success_rate,
            avg_run_duration_ms=f.avg_run_duration_ms,
            requests=f.requests,
            errors=f.errors,
            input_tokens=f.input_tokens,
            output_tokens=f.output_tokens,
            total_tokens=f.total_tokens,
            cost_usd=f.cost_usd,
            instances=f.instances,
            _asker=asker,
        )

    @strawberry.field(description="Per pipeline node, busiest first (empty for other agents).")
    async def nodes(self, info: TallyInfo) -> list[AgentNode]:
        asker = self._asker

        async def load(ids: list[str]) -> list[list[AgentNode]]:
            found = await engine_agents.agent_nodes(asker, tuple(sorted(set(ids))))
            return [[AgentNode(**vars(n)) for n in found[i]] for i in ids]

        return await info.context.loader(("agent_nodes", id(asker)), load).load(self.agent_id)


async def agent_stats(info: TallyInfo, asker: Asker, agent_id: str) -> AgentStats | None:
    """An agent's figures in the asker's window, batched with every other agent asked for
    with the same asker (breakdown nodes)."""

    async def load(ids: list[str]) -> list[AgentStats | None]:
        found = await engine_agents.agent_figures(asker, tuple(sorted(set(ids))))
        return [AgentStats.of(found[i], asker) if i in found else None for i in ids]

    return await info.context.loader(("agent_stats", id(asker)), load).load(agent_id)


@strawberry.type(description="A gateway over the range.")
class GatewayStats:
    gateway: str
    requests: float
    unique_callers: float
    request_bytes: float
    response_bytes: float
    bandwidth_bytes: float = strawberry.field(description="Request plus response bytes.")
    errors: float
    error_rate: float | None
    blocked: float
    avg_latency_ms: float | None
    cost_usd: float


def _gateway(keys: tuple[Any, ...], v: Values) -> GatewayStats:
    return GatewayStats(
        gateway=keys[0],
        requests=v.get(Metric.REQUESTS) or 0.0,
        unique_callers=v.get(Metric.UNIQUE_CALLERS) or 0.0,
        request_bytes=v.get(Metric.REQUEST_BYTES) or 0.0,
        response_bytes=v.get(Metric.RESPONSE_BYTES) or 0.0,
        bandwidth_bytes=v.get(engine_gateways.BANDWIDTH) or 0.0,
        errors=v.get(Metric.ERRORS) or 0.0,
        error_rate=v.get(Metric.ERROR_RATE),
        blocked=v.get(Metric.BLOCKED) or 0.0,
        avg_latency_ms=v.get(Metric.AVG_LATENCY_MS),
        cost_usd=v.get(Metric.COST_USD) or 0.0,
    )


@strawberry.type
class AgentsQuery:
    @strawberry.field(description="Agents active in the range, with cursors (10 per page).")
    async def agents(
        self,
        info: TallyInfo,
        range: TimeRangeInput,
        filter: EventFilter | None = None,
        order_by: AgentOrder = engine_agents.AgentOrder.RUNS,  # type: ignore[valid-type]
        descending: bool = True,
        first: int = 10,
        after: str | None = None,
    ) -> Connection[AgentStats]:
        asker = info.context.asker(range, filter)
        page, figures = await engine_agents.agents_page(asker, order_by, descending, first, after)
        return ranked_connection(page, after, lambda k, _: AgentStats.of(figures[k[0]], asker))

    @strawberry.field(description="Gateways of the range, with cursors (10 per page).")
    async def gateways(
        self,
        info: TallyInfo,
        range: TimeRangeInput,
        filter: EventFilter | None = None,
        order_by: GatewayOrder = engine_gateways.GatewayOrder.REQUESTS,  # type: ignore[valid-type]
        descending: bool = True,
        first: int = 10,
        after: str | None = None,
    ) -> Connection[GatewayStats]:
        asker = info.context.asker(range, filter)
        page = await engine_gateways.gateways_page(asker, order_by, descending, first, after)
        return ranked_connection(page, after, _gateway)
