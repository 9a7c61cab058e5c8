"""`agents` and `gateways`: per agent its runs, tokens, cost and pipeline nodes; per gateway
its traffic, callers, bandwidth and errors. Both through the engine's rollups."""

from __future__ import annotations

from typing import Annotated, Any, TypeAlias

import strawberry

from tallyql.engine import agents as engine_agents
from tallyql.engine import gateways as engine_gateways
from tallyql.engine.analytics import Asker
from tallyql.engine.query.registry import Metric
from tallyql.engine.ranking import Values
from tallyql.schema.base.common import AfterArg, DescendingArg, FilterArg, FirstArg, RangeArg
from tallyql.schema.base.context import TallyInfo
from tallyql.schema.base.described import describe_values
from tallyql.schema.base.pages import Connection, ranked_connection
from tallyql.schema.base.scalars import Long, as_count

AgentOrder: TypeAlias = engine_agents.AgentOrder  # strawberry.enum below marks the class in place
strawberry.enum(AgentOrder, name="AgentOrder", description="How to order agents.")
describe_values(
    AgentOrder,
    {
        "RUNS": "By agent runs (count).",
        "REQUESTS": "By events of the agent, runs included (count).",
        "COST": "By cost in USD.",
        "TOKENS": "By input plus output tokens.",
        "SUCCESS_RATE": "By the share of runs that succeeded.",
        "AVG_RUN_DURATION": "By mean run duration in ms.",
    },
)
GatewayOrder: TypeAlias = (
    engine_gateways.GatewayOrder
)  # strawberry.enum below marks the class in place
strawberry.enum(
    GatewayOrder,
    name="GatewayOrder",
    description="How to order gateways; BANDWIDTH is request plus response bytes.",
)
describe_values(
    GatewayOrder,
    {
        "REQUESTS": "By events (count).",
        "BANDWIDTH": "By request plus response bytes.",
        "ERROR_RATE": "By errors / events.",
        "UNIQUE_CALLERS": "By distinct callers.",
        "COST": "By cost in USD.",
    },
)


@strawberry.type(description="A pipeline node of an agent.")
class AgentNode:
    node: str = strawberry.field(description="The node's name.")
    requests: Long = strawberry.field(description="Events of the node, of every kind (count).")
    errors: Long = strawberry.field(description="Events of the node with status error (count).")
    error_rate: float | None = strawberry.field(description="Errors / events, 0 to 1.")
    cost_usd: float = strawberry.field(description="Cost of the node's events in USD.")
    _agent_id: strawberry.Private[str]
    _asker: strawberry.Private[Asker]

    async def _timing(self, info: TallyInfo) -> engine_agents.NodeTiming | None:
        """Both timings of every node asked for with this asker, in one batch."""
        asker = self._asker

        async def load(keys: list[tuple[str, str]]) -> list[engine_agents.NodeTiming | None]:
            agents = tuple(sorted({agent for agent, _ in keys}))
            found = await engine_agents.node_timings(asker, agents)
            return [found.get(k) for k in keys]

        loader = info.context.loader(("node_timings", id(asker)), load)
        return await loader.load((self._agent_id, self.node))

    @strawberry.field(
        description="Mean latency in ms of the node's calls (LLM, tool and HTTP calls) that "
        "report one; agent runs are not calls (see avgRunDurationMs)."
    )
    async def avg_latency_ms(self, info: TallyInfo) -> float | None:
        timing = await self._timing(info)
        return timing.avg_latency_ms if timing else None

    @strawberry.field(
        description="Mean duration in ms of the node's agent runs; null without runs."
    )
    async def avg_run_duration_ms(self, info: TallyInfo) -> float | None:
        timing = await self._timing(info)
        return timing.avg_run_duration_ms if timing else None


@strawberry.type(description="An agent over the range: runs (agent_run events) and all calls.")
class AgentStats:
    agent_id: str = strawberry.field(description="The agent's id.")
    runs: Long = strawberry.field(description="Agent runs (agent_run events; count).")
    success_rate: float | None = strawberry.field(
        description="Share of runs that succeeded, 0 to 1."
    )
    avg_run_duration_ms: float | None = strawberry.field(
        description="Mean duration in ms of the agent's runs (agent_run events only; never "
        "mixed with the latency of its calls)."
    )
    requests: Long = strawberry.field(
        description="Every event of the agent, runs included (count)."
    )
    errors: Long = strawberry.field(description="Events with status error (count).")
    input_tokens: Long = strawberry.field(description="Input tokens of its events.")
    output_tokens: Long = strawberry.field(description="Output tokens of its events.")
    total_tokens: Long = strawberry.field(description="Input plus output tokens.")
    cost_usd: float = strawberry.field(description="Cost of its events in USD.")
    instances: int = strawberry.field(description="Distinct agent instances (count).")
    _asker: strawberry.Private[Asker]

    @classmethod
    def of(cls, f: engine_agents.AgentFigures, asker: Asker) -> AgentStats:
        return cls(
            agent_id=f.agent_id,
            runs=as_count(f.runs),
            success_rate=f.success_rate,
            avg_run_duration_ms=f.avg_run_duration_ms,
            requests=as_count(f.requests),
            errors=as_count(f.errors),
            input_tokens=as_count(f.input_tokens),
            output_tokens=as_count(f.output_tokens),
            total_tokens=as_count(f.total_tokens),
            cost_usd=f.cost_usd,
            instances=as_count(f.instances),
            _asker=asker,
        )

    @strawberry.field(description="Per pipeline node, busiest first (empty for other agents).")
    async def nodes(self, info: TallyInfo) -> list[AgentNode]:
        asker = self._asker

        async def load(ids: list[str]) -> list[list[AgentNode]]:
            found = await engine_agents.agent_nodes(asker, tuple(sorted(set(ids))))
            return [
                [AgentNode(**vars(n), _agent_id=i, _asker=asker) for n in found[i]] for i in ids
            ]

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
    gateway: str = strawberry.field(description="The gateway's name.")
    requests: Long = strawberry.field(description="Events through the gateway (count).")
    unique_callers: int = strawberry.field(
        description="Distinct callers: API key, else client IP (count)."
    )
    request_bytes: Long = strawberry.field(description="Request body bytes (sum).")
    response_bytes: Long = strawberry.field(description="Response body bytes (sum).")
    bandwidth_bytes: Long = strawberry.field(description="Request plus response bytes.")
    errors: Long = strawberry.field(description="Events with status error (count).")
    error_rate: float | None = strawberry.field(description="Errors / events, 0 to 1.")
    blocked: Long = strawberry.field(description="Events blocked by a policy (count).")
    avg_latency_ms: float | None = strawberry.field(
        description="Mean latency in ms of the gateway's events that report one (its kinds "
        "mixed, as the filter selects)."
    )
    cost_usd: float = strawberry.field(description="Cost in USD.")


def _gateway(keys: tuple[Any, ...], v: Values) -> GatewayStats:
    return GatewayStats(
        gateway=keys[0],
        requests=as_count(v.get(Metric.REQUESTS) or 0.0),
        unique_callers=as_count(v.get(Metric.UNIQUE_CALLERS) or 0.0),
        request_bytes=as_count(v.get(Metric.REQUEST_BYTES) or 0.0),
        response_bytes=as_count(v.get(Metric.RESPONSE_BYTES) or 0.0),
        bandwidth_bytes=as_count(v.get(engine_gateways.BANDWIDTH) or 0.0),
        errors=as_count(v.get(Metric.ERRORS) or 0.0),
        error_rate=v.get(Metric.ERROR_RATE),
        blocked=as_count(v.get(Metric.BLOCKED) or 0.0),
        avg_latency_ms=v.get(Metric.AVG_LATENCY_MS),
        cost_usd=v.get(Metric.COST_USD) or 0.0,
    )


@strawberry.type
class AgentsQuery:
    @strawberry.field(description="Agents active in the range, with cursors (10 per page).")
    async def agents(
        self,
        info: TallyInfo,
        range: RangeArg,
        filter: FilterArg = None,
        order_by: Annotated[
            AgentOrder,
            strawberry.argument(description="What ranks the agents."),
        ] = engine_agents.AgentOrder.RUNS,
        descending: DescendingArg = True,
        first: FirstArg = 10,
        after: AfterArg = None,
    ) -> Connection[AgentStats]:
        asker = info.context.asker(range, filter)
        page, figures = await engine_agents.agents_page(asker, order_by, descending, first, after)
        return ranked_connection(page, after, lambda k, _: AgentStats.of(figures[k[0]], asker))

    @strawberry.field(description="Gateways of the range, with cursors (10 per page).")
    async def gateways(
        self,
        info: TallyInfo,
        range: RangeArg,
        filter: FilterArg = None,
        order_by: Annotated[
            GatewayOrder,
            strawberry.argument(description="What ranks the gateways."),
        ] = engine_gateways.GatewayOrder.REQUESTS,
        descending: DescendingArg = True,
        first: FirstArg = 10,
        after: AfterArg = None,
    ) -> Connection[GatewayStats]:
        asker = info.context.asker(range, filter)
        page = await engine_gateways.gateways_page(asker, order_by, descending, first, after)
        return ranked_connection(page, after, _gateway)
