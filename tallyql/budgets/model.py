"""Budgets: a spending limit over a period for a scope of the workspace's traffic."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any
from zoneinfo import ZoneInfo

from tallyql.engine.query.filter_codec import spec_from_json
from tallyql.engine.query.filters import EventFilterSpec
from tallyql.engine.query.periods import Period
from tallyql.field_error import FieldError

DEFAULT_THRESHOLDS = (50, 80, 100)


class BudgetScope(Enum):
    WORKSPACE = "workspace"
    USER = "user"
    GROUP = "group"
    API_KEY = "api_key"
    MODEL = "model"
    PROVIDER = "provider"
    FILTER = "filter"


SCOPE_FILTER_FIELD: dict[BudgetScope, str] = {
    BudgetScope.USER: "users",
    BudgetScope.GROUP: "groups",
    BudgetScope.API_KEY: "api_keys",
    BudgetScope.MODEL: "models",
    BudgetScope.PROVIDER: "providers",
}


class BudgetError(FieldError):
    """A budget described wrongly (field, message)."""


@dataclass(frozen=True)
class Budget:
    workspace_id: int
    id: str
    name: str
    amount_nanousd: int
    period: Period
    timezone: str
    scope: BudgetScope
    scope_value: str | None
    filter: EventFilterSpec
    thresholds: tuple[int, ...]
    webhook_ids: tuple[str, ...]
    created_at: datetime
    updated_at: datetime

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def spend_filter(self) -> EventFilterSpec:
        """The events whose cost counts against the budget."""
        if self.scope is BudgetScope.FILTER:
            return self.filter
        field = SCOPE_FILTER_FIELD.get(self.scope)
        if field is None:
            return EventFilterSpec()
        only: dict[str, Any] = {field: (self.scope_value or "",)}  # Any: fields differ in type
        return EventFilterSpec(**only)

    @classmethod
    def from_row(cls, row: Any) -> Budget:
        return cls(
            workspace_id=row["workspace_id"],
            id=row["id"],
            name=row["name"],
            amount_nanousd=int(row["amount_nanousd"]),
            period=Period(row["period"]),
            timezone=row["timezone"],
            scope=BudgetScope(row["scope_type"]),
            scope_value=row["scope_value"],
            filter=spec_from_json(row["filter"]),
            thresholds=tuple(int(t) for t in row["thresholds"]),
            webhook_ids=tuple(row["webhook_ids"]),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )
