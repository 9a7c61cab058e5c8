"""`costInsights`: where the money goes and how to spend less, every figure from the engine.

- cost by request type; trend versus the previous period (UP/DOWN/FLAT within 1%), its
  percentage null against a zero or negligible baseline (`engine/relative_change.py`);
- top drivers: models, users and agents by cost;
- projected month: the average cost per day with data, times 30, next to the previous
  period's projection;
- recommendations, each with the figures behind it (see `recommendations.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tallyql.engine.analytics import Asker, ranked_groups
from tallyql.engine.query.buckets import Granularity
from tallyql.engine.query.registry import Dimension, DimensionRef, Metric
from tallyql.engine.relative_change import USD_FLOOR, ChangeNote, relative_change

TOP_DRIVERS = 5
FLAT_PERCENT = 1.0
DAYS_PER_MONTH = 30


@dataclass
class Share:
    key: str | None
    provider: str | None
    cost_usd: float
    requests: float
    share: float | None


@dataclass
class Trend:
    current_usd: float
    previous_usd: float
    direction: str  # UP | DOWN | FLAT
    percent: float | None
    percent_note: ChangeNote | None = None
    """Why `percent` is None."""


@dataclass
class Projection:
    days_with_data: int
    daily_average_usd: float | None
    projected_usd: float | None
    previous_projected_usd: float | None
    change_percent: float | None
    change_note: ChangeNote | None = None
    """Why `change_percent` is None."""


@dataclass
class CostOverview:
    total_usd: float
    by_request_type: list[Share] = field(default_factory=list)
    top_models: list[Share] = field(default_factory=list)
    top_users: list[Share] = field(default_factory=list)
    top_agents: list[Share] = field(default_factory=list)


async def total_cost(asker: Asker) -> float:
    result = await asker.run((Metric.COST_USD,))
    return result.value((0,), Metric.COST_USD) or 0.0


async def trend(asker: Asker) -> Trend:
    current = await total_cost(asker)
    previous = await total_cost(asker.for_window(asker.window.previous()))
    change = relative_change(current, previous, USD_FLOOR)
    percent = change.percent
    if percent is None:  # no baseline to speak of: the sign of the difference
        direction = "UP" if current > previous else "DOWN" if current < previous else "FLAT"
    elif abs(percent) < FLAT_PERCENT:
        direction = "FLAT"
    else:
        direction = "UP" if percent > 0 else "DOWN"
    return Trend(current, previous, direction, percent, change.note)


async def _projection_of(asker: Asker) -> tuple[int, float | None, float | None]:
    result = await asker.run((Metric.COST_USD, Metric.REQUESTS), (), Granularity.DAY)
    days = [
        i for i in range(result.bucketing.count) if (result.value((i,), Metric.REQUESTS) or 0) > 0
    ]
    if not days:
        return 0, None, None
    cost = sum(result.value((i,), Metric.COST_USD) or 0.0 for i in days)
    average = cost / len(days)
    return len(days), average, average * DAYS_PER_MONTH


async def projection(asker: Asker) -> Projection:
    days, average, projected = await _projection_of(asker)
    _, _, before = await _projection_of(asker.for_window(asker.window.previous()))
    change = relative_change(projected, before, USD_FLOOR)
    return Projection(days, average, projected, before, change.percent, change.note)


async def _shares(
    asker: Asker, dims: tuple[DimensionRef, ...], total: float, limit: int | None
) -> list[Share]:
    result = await asker.run((Metric.COST_USD, Metric.REQUESTS), dims)
    rows = []
    for key in result.group_keys():
        values = result.values[key]
        cost = values[Metric.COST_USD] or 0.0
        provider = key[2] if len(dims) > 1 else None
        rows.append(
            Share(
                key[1],
                provider,
                cost,
                values[Metric.REQUESTS] or 0.0,
                cost / total if total else None,
            )
        )
    rows.sort(key=lambda s: (-s.cost_usd, s.key or "", s.provider or ""))
    return rows[:limit] if limit else rows


async def overview(asker: Asker) -> CostOverview:
    total = await total_cost(asker)
    model_dims = (DimensionRef(Dimension.MODEL), DimensionRef(Dimension.PROVIDER))
    return CostOverview(
        total_usd=total,
        by_request_type=await _shares(asker, (DimensionRef(Dimension.REQUEST_TYPE),), total, None),
        top_models=await _shares(asker, model_dims, total, TOP_DRIVERS),
        top_users=await _top(asker, Dimension.USER, total),
        top_agents=await _top(asker, Dimension.AGENT, total),
    )


async def _top(asker: Asker, dimension: Dimension, total: float) -> list[Share]:
    groups = await ranked_groups(
        asker, DimensionRef(dimension), (Metric.COST_USD, Metric.REQUESTS), Metric.COST_USD, True
    )
    out = []
    for key, values in groups:
        if key is None:
            continue  # events without a user (or agent) are not a driver
        cost = values[Metric.COST_USD] or 0.0
        out.append(
            Share(key, None, cost, values[Metric.REQUESTS] or 0.0, cost / total if total else None)
        )
        if len(out) == TOP_DRIVERS:
            break
    return out
