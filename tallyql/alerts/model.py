"""Alert rules: a metric of the engine over a trailing window, or since the start of the local
day, week or month, compared with a threshold; or a health condition of the server itself
(alerts/health.py) compared with a threshold."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any
from zoneinfo import ZoneInfo

from tallyql.alerts.health import HealthCondition
from tallyql.engine.query.filter_codec import spec_from_json
from tallyql.engine.query.filters import EventFilterSpec
from tallyql.engine.query.periods import Period, period_bounds
from tallyql.engine.query.registry import Metric
from tallyql.field_error import FieldError

MAX_WINDOW_SECONDS = 31 * 86400
CALENDAR_SECONDS = {Period.DAY: 86400, Period.WEEK: 7 * 86400, Period.MONTH: 31 * 86400}
"""A calendar rule's window_seconds: the longest its period can be (shown, never measured)."""


def window_start(rule: AlertRule, now: datetime) -> datetime:
    """Where the rule's window starts when evaluated at `now`."""
    if rule.calendar is None:
        return now - timedelta(seconds=rule.window_seconds)
    return period_bounds(rule.calendar, now, ZoneInfo(rule.timezone))[0]


class Operator(Enum):
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"
    EQ = "eq"


def holds(operator: Operator, value: float | None, threshold: float) -> bool:
    """Whether `value <operator> threshold`; a metric with no value (a rate over no events)
    never meets a condition."""
    if value is None or math.isnan(value):
        return False
    if operator is Operator.GT:
        return value > threshold
    if operator is Operator.GTE:
        return value >= threshold
    if operator is Operator.LT:
        return value < threshold
    if operator is Operator.LTE:
        return value <= threshold
    return math.isclose(value, threshold, rel_tol=1e-9, abs_tol=1e-12)


class AlertState(Enum):
    OK = "ok"
    FIRING = "firing"


class AlertError(FieldError):
    """An alert rule described wrongly (field, message)."""


@dataclass(frozen=True)
class AlertRule:
    workspace_id: int
    id: str
    name: str
    metric: Metric | None
    """None: a health rule."""
    window_seconds: int
    """0 for a health rule (measured at the evaluation)."""
    filter: EventFilterSpec
    operator: Operator
    threshold: float
    cooldown_seconds: int
    webhook_ids: tuple[str, ...]
    enabled: bool
    calendar: Period | None
    """Measured from the start of the local day, week or month; None: the trailing window."""
    timezone: str
    state: AlertState
    state_version: int
    current_firing_id: str | None
    last_value: float | None
    last_evaluated_at: datetime | None
    last_fired_at: datetime | None
    created_at: datetime
    updated_at: datetime
    health: HealthCondition | None = None
    """What a health rule watches; None: a metric rule."""

    @classmethod
    def from_row(cls, row: Any) -> AlertRule:
        return cls(
            workspace_id=row["workspace_id"],
            id=row["id"],
            name=row["name"],
            metric=None if row.get("health") else Metric(row["metric"]),
            window_seconds=int(row["window_seconds"]),
            filter=spec_from_json(row["filter"]),
            operator=Operator(row["operator"]),
            threshold=float(row["threshold"]),
            cooldown_seconds=int(row["cooldown_seconds"]),
            webhook_ids=tuple(row["webhook_ids"]),
            enabled=bool(row["enabled"]),
            calendar=Period(row["calendar"]) if row.get("calendar") else None,
            timezone=row.get("timezone") or "UTC",
            state=AlertState(row["state"]),
            state_version=int(row["state_version"]),
            current_firing_id=row["current_firing_id"],
            last_value=row["last_value"],
            last_evaluated_at=row["last_evaluated_at"],
            last_fired_at=row["last_fired_at"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            health=HealthCondition(row["health"]) if row.get("health") else None,
        )
