"""Budgets in the database: create, change, delete (each audited), read."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tallyql.budgets.model import (
    DEFAULT_THRESHOLDS,
    SCOPE_FILTER_FIELD,
    Budget,
    BudgetError,
    BudgetScope,
)
from tallyql.clock import clock
from tallyql.engine.filter_codec import spec_to_json
from tallyql.engine.filters import EventFilterSpec
from tallyql.engine.periods import Period
from tallyql.engine.timerange import TimeRangeError, zone
from tallyql.money import round_to_nano, to_usd
from tallyql.storage.audit import Actor, audit_change
from tallyql.storage.database import Database
from tallyql.storage.live_tables import budget_crossings, budgets
from tallyql.storage.pages import Page, keyset_page
from tallyql.webhooks.store import existing_ids

MAX_AMOUNT_USD = 1_000_000_000.0
MAX_THRESHOLD = 1000


@dataclass
class BudgetFields:
    """A budget's settable fields; None leaves a field as it is (on update)."""

    name: str | None = None
    amount_usd: float | None = None
    period: Period | None = None
    timezone: str | None = None
    scope: BudgetScope | None = None
    scope_value: str | None = None
    filter: EventFilterSpec | None = None
    thresholds: Sequence[int] | None = None
    webhook_ids: Sequence[str] | None = None


def _check(values: dict[str, Any]) -> None:
    if not values["name"].strip():
        raise BudgetError("name", "give the budget a name")
    if values["amount_nanousd"] <= 0:
        raise BudgetError("amountUsd", "the limit must be more than 0")
    try:
        zone(values["timezone"])
    except TimeRangeError as exc:
        raise BudgetError("timezone", str(exc)) from None
    thresholds = values["thresholds"]
    if not thresholds or any(not 1 <= t <= MAX_THRESHOLD for t in thresholds):
        raise BudgetError("thresholds", f"thresholds are percents from 1 to {MAX_THRESHOLD}")
    scope = BudgetScope(values["scope_type"])
    if scope in SCOPE_FILTER_FIELD and not values["scope_value"]:
        raise BudgetError("scopeValue", f"a {scope.name} budget needs a scopeValue")
    if scope is BudgetScope.FILTER and not values["filter"]:
        raise BudgetError("filter", "a FILTER budget needs a filter")


async def _values(
    conn: AsyncConnection, workspace_id: int, fields: BudgetFields, base: dict[str, Any]
) -> dict[str, Any]:
    values = dict(base)
    if fields.name is not None:
        values["name"] = fields.name
    if fields.amount_usd is not None:
        if not 0 < fields.amount_usd <= MAX_AMOUNT_USD:
            raise BudgetError("amountUsd", f"the limit must be between 0 and {MAX_AMOUNT_USD:.0f}")
        values["amount_nanousd"] = round_to_nano(fields.amount_usd)
    if fields.period is not None:
        values["period"] = fields.period.value
    if fields.timezone is not None:
        values["timezone"] = fields.timezone
    if fields.scope is not None:
        values["scope_type"] = fields.scope.value
        values["scope_value"] = fields.scope_value
    elif fields.scope_value is not None:
        values["scope_value"] = fields.scope_value
    if fields.filter is not None:
        values["filter"] = spec_to_json(fields.filter)
    if fields.thresholds is not None:
        values["thresholds"] = sorted(set(fields.thresholds))
    if fields.webhook_ids is not None:
        wanted = list(dict.fromkeys(fields.webhook_ids))
        missing = set(wanted) - await existing_ids(conn, workspace_id, wanted)
        if missing:
            raise BudgetError("webhookIds", f"no such webhook: {', '.join(sorted(missing))}")
        values["webhook_ids"] = wanted
    _check(values)
    return values


async def create_budget(
    db: Database, workspace_id: int, fields: BudgetFields, actor: Actor
) -> Budget:
    now = clock.now()
    base = {
        "workspace_id": workspace_id,
        "id": uuid.uuid4().hex,
        "name": "",
        "amount_nanousd": 0,
        "period": Period.MONTH.value,
        "timezone": "UTC",
        "scope_type": BudgetScope.WORKSPACE.value,
        "scope_value": None,
        "filter": {},
        "thresholds": list(DEFAULT_THRESHOLDS),
        "webhook_ids": [],
        "created_at": now,
        "updated_at": now,
    }
    async with db.write() as conn:
        values = await _values(conn, workspace_id, fields, base)
        await conn.execute(budgets.insert().values(**values))
        await audit_change(
            conn, workspace_id, "create", "budget", values["id"], actor, _described(values)
        )
    return Budget.from_row(values)


async def update_budget(
    db: Database, workspace_id: int, budget_id: str, fields: BudgetFields, actor: Actor
) -> Budget | None:
    async with db.write() as conn:
        row = await _row(conn, workspace_id, budget_id)
        if row is None:
            return None
        values = await _values(conn, workspace_id, fields, row)
        values["updated_at"] = clock.now()
        await conn.execute(
            update(budgets)
            .where(budgets.c.workspace_id == workspace_id, budgets.c.id == budget_id)
            .values(**{k: v for k, v in values.items() if k not in ("workspace_id", "id")})
        )
        if any(values[c] != row[c] for c in DEFINING_COLUMNS):
            # the crossings recorded so far were of another limit or spend: a threshold of
            # the budget as it now stands is announced when its spend reaches it
            await _forget_crossings(conn, workspace_id, budget_id)
        await audit_change(
            conn, workspace_id, "update", "budget", budget_id, actor, _described(values)
        )
    return Budget.from_row(values)


async def delete_budget(db: Database, workspace_id: int, budget_id: str, actor: Actor) -> bool:
    async with db.write() as conn:
        row = await _row(conn, workspace_id, budget_id)
        if row is None:
            return False
        mine = (budgets.c.workspace_id == workspace_id, budgets.c.id == budget_id)
        await conn.execute(delete(budgets).where(*mine))
        await _forget_crossings(conn, workspace_id, budget_id)
        await audit_change(
            conn, workspace_id, "delete", "budget", budget_id, actor, {"name": row["name"]}
        )
    return True


DEFINING_COLUMNS = (
    "amount_nanousd",
    "period",
    "timezone",
    "scope_type",
    "scope_value",
    "filter",
)
"""A change to any of these changes what a threshold means (its name, thresholds and
webhooks do not)."""


async def _forget_crossings(conn: AsyncConnection, workspace_id: int, budget_id: str) -> None:
    await conn.execute(
        delete(budget_crossings).where(
            budget_crossings.c.workspace_id == workspace_id,
            budget_crossings.c.budget_id == budget_id,
        )
    )


async def get_budget(db: Database, workspace_id: int, budget_id: str) -> Budget | None:
    async with db.read() as conn:
        row = await _row(conn, workspace_id, budget_id)
    return Budget.from_row(row) if row else None


async def list_budgets(db: Database, workspace_id: int, first: int, after: str | None) -> Page:
    query = select(budgets).where(budgets.c.workspace_id == workspace_id)
    return await keyset_page(
        db, query, budgets.c.created_at, budgets.c.id, "bu", first, after, newest_first=False
    )


async def all_budgets(db: Database, workspace_ids: Sequence[int] | None) -> list[Budget]:
    query = select(budgets)
    if workspace_ids is not None:
        query = query.where(budgets.c.workspace_id.in_(list(workspace_ids)))
    async with db.read() as conn:
        rows = (await conn.execute(query.order_by(budgets.c.workspace_id, budgets.c.id))).mappings()
        return [Budget.from_row(r) for r in rows]


async def crossed_thresholds(db: Database, budget: Budget, period_start: datetime) -> list[int]:
    t = budget_crossings
    async with db.read() as conn:
        rows = await conn.execute(
            select(t.c.threshold)
            .where(
                t.c.workspace_id == budget.workspace_id,
                t.c.budget_id == budget.id,
                t.c.period_start == period_start,
            )
            .order_by(t.c.threshold)
        )
        return [int(v) for v in rows.scalars()]


async def _row(conn: AsyncConnection, workspace_id: int, budget_id: str) -> dict[str, Any] | None:
    found = (
        (
            await conn.execute(
                select(budgets).where(
                    budgets.c.workspace_id == workspace_id, budgets.c.id == budget_id
                )
            )
        )
        .mappings()
        .first()
    )
    return dict(found) if found else None


def _described(values: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": values["name"],
        "amount_usd": to_usd(values["amount_nanousd"]),
        "period": values["period"],
        "timezone": values["timezone"],
        "scope": values["scope_type"],
        "scope_value": values["scope_value"],
        "thresholds": values["thresholds"],
    }
