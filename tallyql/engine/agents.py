"""Agents: per agent its runs (agent_run events: count, success rate, average duration), the
tokens and cost of all its events, and for pipeline agents the same per node."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

from tallyql.engine.analytics import Asker
from tallyql.engine.query.registry import Dimension, Metric
from tallyql.engine.ranking import RankedPage, grouped, narrow, page, rank


class AgentOrder(Enum):
    RUNS = "RUNS"
    REQUESTS = "REQUESTS"
    COST = "COST"
    TOKENS = "TOKENS"
    SUCCESS_RATE = "SUCCESS_RATE"
    AVG_RUN_DURATION = "AVG_RUN_DURATION"


RUN_METRICS = (Metric.REQUESTS, Metric.SUCCESS_RATE, Metric.AVG_LATENCY_MS)
ALL_METRICS = (
    Metric.REQUESTS,
    Metric.ERRORS,
    Metric.INPUT_TOKENS,
    Metric.OUTPUT_TOKENS,
    Metric.TOTAL_TOKENS,
    Metric.COST_USD,
    Metric.UNIQUE_AGENT_INSTANCES,
)
NODE_METRICS = (Metric.REQUESTS, Metric.ERRORS, Metric.ERROR_RATE, Metric.COST_USD)
CALL_KINDS = ("llm_call", "tool_call", "http_request")
"""The kinds whose latency is a call's: an agent run's latency is its duration, kept apart."""


@dataclass(frozen=True)
class AgentFigures:
    agent_id: str
    runs: float
    success_rate: float | None
    avg_run_duration_ms: float | None
    requests: float
    errors: float
    input_tokens: float
    output_tokens: float
    total_tokens: float
    cost_usd: float
    instances: float

    def sort_values(self) -> dict[Any, float | None]:
        return {
            AgentOrder.RUNS: self.runs,
            AgentOrder.REQUESTS: self.requests,
            AgentOrder.COST: self.cost_usd,
            AgentOrder.TOKENS: self.total_tokens,
            AgentOrder.SUCCESS_RATE: self.success_rate,
            AgentOrder.AVG_RUN_DURATION: self.avg_run_duration_ms,
        }


@dataclass(frozen=True)
class NodeFigures:
    node: str
    requests: float
    errors: float
    error_rate: float | None
    cost_usd: float


@dataclass(frozen=True)
class NodeTiming:
    """A pipeline node's mean call latency and mean run duration, never mixed: an agent run's
    latency is how long the run took, not how long a call waited."""

    avg_latency_ms: float | None
    avg_run_duration_ms: float | None


async def node_timings(
    asker: Asker, agent_ids: tuple[str, ...]
) -> dict[tuple[str, str], NodeTiming]:
    """Per (agent, node) of the given agents: two concurrent questions, calls and runs."""
    if not agent_ids:
        return {}
    spec = replace(asker.filter, agents=agent_ids)
    dims = (Dimension.AGENT, Dimension.NODE)
    latency = (Metric.AVG_LATENCY_MS,)
    calls, runs = await asyncio.gather(
        grouped(asker, dims, latency, replace(spec, kinds=narrow(spec.kinds, CALL_KINDS))),
        grouped(asker, dims, latency, replace(spec, kinds=narrow(spec.kinds, ("agent_run",)))),
    )
    call_latency, run_duration = dict(calls), dict(runs)
    return {
        key: NodeTiming(
            call_latency.get(key, {}).get(Metric.AVG_LATENCY_MS),
            run_duration.get(key, {}).get(Metric.AVG_LATENCY_MS),
        )
        for key in {*call_latency, *run_duration}
        if key[1] is not None
    }


async def agent_figures(
    asker: Asker, agent_ids: tuple[str, ...] | None = None
) -> dict[str, AgentFigures]:
    """Every agent active in the window (or the given ones), by id."""
    spec = asker.filter
    if agent_ids is not None:
        spec = replace(spec, agents=agent_ids)
    runs_spec = replace(spec, kinds=narrow(spec.kinds, ("agent_run",)))
    runs = dict(await grouped(asker, (Dimension.AGENT,), RUN_METRICS, runs_spec))
    totals = dict(await grouped(asker, (Dimension.AGENT,), ALL_METRICS, spec))
    out = {}
    for (agent_id,) in set(runs) | set(totals):
        if agent_id is None:
            continue
        r = runs.get((agent_id,), {})
        t = totals.get((agent_id,), {})
        out[agent_id] = AgentFigures(
            agent_id=agent_id,
            runs=r.get(Metric.REQUESTS) or 0.0,
            success_rate=r.get(Metric.SUCCESS_RATE),
            avg_run_duration_ms=r.get(Metric.AVG_LATENCY_MS),
            requests=t.get(Metric.REQUESTS) or 0.0,
            errors=t.get(Metric.ERRORS) or 0.0,
            input_tokens=t.get(Metric.INPUT_TOKENS) or 0.0,
            output_tokens=t.get(Metric.OUTPUT_TOKENS) or 0.0,
            total_tokens=t.get(Metric.TOTAL_TOKENS) or 0.0,
            cost_usd=t.get(Metric.COST_USD) or 0.0,
            instances=t.get(Metric.UNIQUE_AGENT_INSTANCES) or 0.0,
        )
    return out


async def agents_page(
    asker: Asker, order: AgentOrder, descending: bool, first: int, after: str | None
) -> tuple[RankedPage, dict[str, AgentFigures]]:
    figures = await agent_figures(asker)
    groups = [((a,), f.sort_values()) for a, f in figures.items()]
    ranked = rank(groups, order, descending)
    kind = f"agents:{order.value}:{int(descending)}"
    return page(ranked, order, descending, first, after, kind), figures


async def agent_nodes(asker: Asker, agent_ids: tuple[str, ...]) -> dict[str, list[NodeFigures]]:
    """Per agent its pipeline nodes, busiest first (agents without nodes: an empty list)."""
    out: dict[str, list[NodeFigures]] = {a: [] for a in agent_ids}
    if not agent_ids:
        return out
    spec = replace(asker.filter, agents=agent_ids)
    groups = await grouped(asker, (Dimension.AGENT, Dimension.NODE), NODE_METRICS, spec)
    for (agent_id, node), v in rank(groups, Metric.REQUESTS):
        if node is None or agent_id not in out:
            continue
        out[agent_id].append(
            NodeFigures(
                node=node,
                requests=v.get(Metric.REQUESTS) or 0,
                errors=v.get(Metric.ERRORS) or 0,
                error_rate=v.get(Metric.ERROR_RATE),
                cost_usd=v.get(Metric.COST_USD) or 0.0,
            )
        )
    return out
