"""Operator views across workspaces: usage per workspace, platform totals, spend split by
BYOK, and anomalies. Every figure is an engine query with the all-workspaces scope.

Anomalies:
- HIGH_COST: a workspace whose cost in the range is above 2x the average cost of the
  workspaces with traffic in the range;
- COST_JUMP: a local day on which a workspace's cost is at least 2x its previous day's (which
  must be above zero) and at least JUMP_MIN_USD higher.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tallyql.engine.analytics import Asker
from tallyql.engine.query.buckets import Granularity
from tallyql.engine.query.registry import Dimension, DimensionRef, Metric

HIGH_COST_FACTOR = 2.0
JUMP_FACTOR = 2.0
JUMP_MIN_USD = 1.0

WORKSPACE_METRICS = (
    Metric.REQUESTS,
    Metric.ERRORS,
    Metric.INPUT_TOKENS,
    Metric.OUTPUT_TOKENS,
    Metric.TOTAL_TOKENS,
    Metric.COST_USD,
)
_BY_WORKSPACE = (DimensionRef(Dimension.WORKSPACE),)


async def figures_by_workspace(asker: Asker) -> dict[int, dict[Metric, float]]:
    """Requests, errors, tokens and cost of each workspace with traffic in the window."""
    result = await asker.run(WORKSPACE_METRICS, _BY_WORKSPACE)
    return {
        int(key[1]): {m: result.values[key][m] or 0.0 for m in WORKSPACE_METRICS}
        for key in result.group_keys()
    }


async def totals(asker: Asker) -> dict[Metric, float]:
    result = await asker.run(WORKSPACE_METRICS)
    return {m: result.value((0,), m) or 0.0 for m in WORKSPACE_METRICS}


@dataclass
class SpendSplit:
    byok_cost_usd: float
    platform_cost_usd: float
    byok_requests: float
    platform_requests: float


async def byok_split(asker: Asker) -> SpendSplit:
    result = await asker.run((Metric.COST_USD, Metric.REQUESTS), (DimensionRef(Dimension.BYOK),))
    cost = {True: 0.0, False: 0.0}
    requests = {True: 0.0, False: 0.0}
    for key in result.group_keys():
        byok = bool(key[1])
        cost[byok] += result.values[key][Metric.COST_USD] or 0.0
        requests[byok] += result.values[key][Metric.REQUESTS] or 0.0
    return SpendSplit(cost[True], cost[False], requests[True], requests[False])


@dataclass
class Anomaly:
    kind: str  # HIGH_COST | COST_JUMP
    workspace_id: int
    cost_usd: float
    baseline_usd: float
    ratio: float | None
    day: datetime | None = None


async def high_cost(asker: Asker) -> list[Anomaly]:
    figures = await figures_by_workspace(asker)
    active = {ws: f[Metric.COST_USD] for ws, f in figures.items() if f[Metric.REQUESTS] > 0}
    if not active:
        return []
    average = sum(active.values()) / len(active)
    out = [
        Anomaly("HIGH_COST", ws, cost, average, cost / average if average else None)
        for ws, cost in active.items()
        if average > 0 and cost > HIGH_COST_FACTOR * average
    ]
    out.sort(key=lambda a: (-a.cost_usd, a.workspace_id))
    return out


async def cost_jumps(asker: Asker) -> list[Anomaly]:
    result = await asker.run((Metric.COST_USD,), _BY_WORKSPACE, Granularity.DAY)
    starts = result.bucketing.starts
    workspaces = sorted({int(k[1]) for k in result.group_keys()})
    out = []
    for ws in workspaces:
        daily = [result.value((i, ws), Metric.COST_USD) or 0.0 for i in range(len(starts))]
        for i in range(1, len(daily)):
            before, now = daily[i - 1], daily[i]
            if before > 0 and now >= JUMP_FACTOR * before and now - before >= JUMP_MIN_USD:
                out.append(Anomaly("COST_JUMP", ws, now, before, now / before, starts[i]))
    out.sort(key=lambda a: (a.day or datetime.min, a.workspace_id))
    return out
