"""Where a budget stands in its current period, through the engine: spend so far, percent
used, projected spend at period end, days remaining, status.

Projected spend = the daily average over the days of the period that have data (at least one
event of the scope) times the days in the period; 0 while no day has data.
Status: EXCEEDED at 100 % or more; WARNING once the lowest threshold is reached; AT_RISK when
the projection is above the limit; otherwise OK.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from tallyql.budgets.model import Budget
from tallyql.clock import clock
from tallyql.engine.analytics import Asker
from tallyql.engine.buckets import Granularity
from tallyql.engine.compiler import Scope
from tallyql.engine.periods import period_bounds
from tallyql.engine.registry import Metric
from tallyql.engine.timerange import TimeWindow
from tallyql.money import round_to_nano
from tallyql.storage.database import Database


class BudgetState(Enum):
    OK = "ok"
    AT_RISK = "at_risk"
    WARNING = "warning"
    EXCEEDED = "exceeded"


@dataclass(frozen=True)
class BudgetStatus:
    period_start: datetime
    period_end: datetime
    spend_nanousd: int
    days_with_data: int
    days_in_period: int
    projected_nanousd: int
    days_remaining: float
    percent_used: float
    state: BudgetState


async def budget_status(db: Database, budget: Budget, now: datetime | None = None) -> BudgetStatus:
    now = now or clock.now()
    start, end = period_bounds(budget.period, now, budget.tz)
    asker = Asker(
        db, Scope.of(budget.workspace_id), TimeWindow(start, end, budget.tz), budget.spend_filter()
    )
    result = await asker.run((Metric.COST_USD, Metric.REQUESTS), granularity=Granularity.DAY)
    days = result.bucketing.count
    spend = 0
    days_with_data = 0
    for index in range(days):
        if (result.value((index,), Metric.REQUESTS) or 0) > 0:
            days_with_data += 1
        spend += round_to_nano(result.value((index,), Metric.COST_USD) or 0.0)
    projected = round(spend / days_with_data * days) if days_with_data else 0
    percent = spend * 100 / budget.amount_nanousd
    if percent >= 100:
        state = BudgetState.EXCEEDED
    elif percent >= min(budget.thresholds):
        state = BudgetState.WARNING
    elif projected > budget.amount_nanousd:
        state = BudgetState.AT_RISK
    else:
        state = BudgetState.OK
    return BudgetStatus(
        period_start=start,
        period_end=end,
        spend_nanousd=spend,
        days_with_data=days_with_data,
        days_in_period=days,
        projected_nanousd=projected,
        days_remaining=max(0.0, (end - now).total_seconds() / 86400),
        percent_used=percent,
        state=state,
    )
