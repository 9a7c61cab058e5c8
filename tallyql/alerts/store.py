"""Alert rules in the database (create, change, delete: each audited) and their firings."""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tallyql.alerts.health import HealthCondition
from tallyql.alerts.model import (
    CALENDAR_SECONDS,
    MAX_WINDOW_SECONDS,
    AlertError,
    AlertRule,
    AlertState,
    Operator,
)
from tallyql.clock import clock
from tallyql.engine.query.filter_codec import spec_to_json
from tallyql.engine.query.filters import EventFilterSpec
from tallyql.engine.query.periods import Period
from tallyql.engine.query.registry import Metric
from tallyql.storage.audit import Actor, audit_change
from tallyql.storage.database import Database
from tallyql.storage.live_tables import alert_firings, alert_rules
from tallyql.storage.pages import Page, keyset_page
from tallyql.webhooks.store import existing_ids

EVALUATION_COLUMNS = (
    "workspace_id",
    "id",
    "state",
    "state_version",
    "current_firing_id",
    "last_value",
    "last_evaluated_at",
    "last_fired_at",
)
"""Kept by `update_rule` as they are in the database (the scheduler owns the last five: an
update that wrote back what it read could undo a concurrent firing and its cooldown)."""


@dataclass
class RuleFields:
    """An alert rule's settable fields; None leaves a field as it is (on update)."""

    name: str | None = None
    metric: Metric | None = None
    window_seconds: int | None = None
    filter: EventFilterSpec | None = None
    operator: Operator | None = None
    threshold: float | None = None
    cooldown_seconds: int | None = None
    webhook_ids: Sequence[str] | None = None
    enabled: bool | None = None
    calendar: Period | None = None
    """Measure from the start of the local period; setting it clears a trailing window."""
    timezone: str | None = None
    health: HealthCondition | None = None
    """Makes a new rule a health rule (which then has no metric, window or filter)."""


def _health_values(fields: RuleFields, values: dict[str, Any]) -> None:
    """A health rule's fields: a condition and a threshold, nothing of a metric rule's."""
    if fields.metric is not None:
        raise AlertError("metric", "a health rule watches a health condition, not a metric")
    if fields.window_seconds is not None or fields.calendar is not None:
        raise AlertError("windowMinutes", "a health rule is measured at each evaluation")
    if fields.filter is not None:
        raise AlertError("filter", "a health rule watches the whole server: no filter")
    if fields.health is not None:
        values["health"] = fields.health.value
        values["metric"] = fields.health.value  # the column is NOT NULL; see live_tables


async def _values(
    conn: AsyncConnection, workspace_id: int, fields: RuleFields, base: dict[str, Any]
) -> dict[str, Any]:
    values = dict(base)
    simple = {
        "name": fields.name,
        "window_seconds": fields.window_seconds,
        "threshold": fields.threshold,
        "cooldown_seconds": fields.cooldown_seconds,
        "enabled": fields.enabled,
    }
    values.update({k: v for k, v in simple.items() if v is not None})
    health_rule = values.get("health") is not None or fields.health is not None
    if fields.health is not None and base.get("metric") and not base.get("health"):
        raise AlertError("health", "a metric rule cannot become a health rule: create one")
    if health_rule:
        _health_values(fields, values)
    if fields.calendar is not None and fields.window_seconds is not None:
        raise AlertError("calendarWindow", "give windowMinutes or calendarWindow, not both")
    if fields.calendar is not None:
        values["calendar"] = fields.calendar.value
        values["window_seconds"] = CALENDAR_SECONDS[fields.calendar]
    elif fields.window_seconds is not None:
        values["calendar"] = None  # a trailing window replaces a calendar one
    if fields.timezone is not None:
        try:
            ZoneInfo(fields.timezone)
        except (ValueError, ZoneInfoNotFoundError):
            raise AlertError("timezone", f"unknown IANA time zone {fields.timezone!r}") from None
        values["timezone"] = fields.timezone
    if fields.metric is not None:
        values["metric"] = fields.metric.value
    if fields.operator is not None:
        values["operator"] = fields.operator.value
    if fields.filter is not None:
        values["filter"] = spec_to_json(fields.filter)
    if fields.webhook_ids is not None:
        wanted = list(dict.fromkeys(fields.webhook_ids))
        missing = set(wanted) - await existing_ids(conn, workspace_id, wanted)
        if missing:
            raise AlertError("webhookIds", f"no such webhook: {', '.join(sorted(missing))}")
        values["webhook_ids"] = wanted
    if not values["name"].strip():
        raise AlertError("name", "give the rule a name")
    if not health_rule and not 60 <= values["window_seconds"] <= MAX_WINDOW_SECONDS:
        raise AlertError("windowMinutes", "the window must be from 1 minute to 31 days")
    if not 0 <= values["cooldown_seconds"] <= MAX_WINDOW_SECONDS:
        raise AlertError("cooldownMinutes", "the cooldown must be from 0 to 31 days")
    if not math.isfinite(values["threshold"]):
        raise AlertError("threshold", "the threshold must be a finite number")
    return values


async def create_rule(
    db: Database, workspace_id: int, fields: RuleFields, actor: Actor
) -> AlertRule:
    now = clock.now()
    base = {
        "workspace_id": workspace_id,
        "id": uuid.uuid4().hex,
        "name": "",
        "metric": "" if fields.health is not None else Metric.REQUESTS.value,
        "health": None,
        "window_seconds": 0 if fields.health is not None else 300,
        "filter": {},
        "operator": Operator.GT.value,
        "threshold": 0.0,
        "cooldown_seconds": 3600,
        "webhook_ids": [],
        "enabled": True,
        "calendar": None,
        "timezone": "UTC",
        "state": AlertState.OK.value,
        "state_version": 0,
        "current_firing_id": None,
        "last_value": None,
        "last_evaluated_at": None,
        "last_fired_at": None,
        "created_at": now,
        "updated_at": now,
    }
    async with db.write() as conn:
        values = await _values(conn, workspace_id, fields, base)
        await conn.execute(alert_rules.insert().values(**values))
        await audit_change(
            conn, workspace_id, "create", "alert_rule", values["id"], actor, _described(values)
        )
    return AlertRule.from_row(values)


async def update_rule(
    db: Database, workspace_id: int, rule_id: str, fields: RuleFields, actor: Actor
) -> AlertRule | None:
    async with db.write() as conn:
        row = await _row(conn, workspace_id, rule_id)
        if row is None:
            return None
        values = await _values(conn, workspace_id, fields, row)
        values["updated_at"] = clock.now()
        changes = {k: v for k, v in values.items() if k not in EVALUATION_COLUMNS}
        if not values["enabled"] and row["current_firing_id"] is not None:
            # disabled while firing: no evaluation will resolve it, so it ends here, and the
            # rule starts from OK when enabled again
            await _close_firing(conn, workspace_id, row["current_firing_id"])
            reset = {
                "state": AlertState.OK.value,
                "state_version": row["state_version"] + 1,
                "current_firing_id": None,
            }
            changes |= reset
            values |= reset
        await conn.execute(
            update(alert_rules)
            .where(alert_rules.c.workspace_id == workspace_id, alert_rules.c.id == rule_id)
            .values(**changes)
        )
        await audit_change(
            conn, workspace_id, "update", "alert_rule", rule_id, actor, _described(values)
        )
    return AlertRule.from_row(values)


async def delete_rule(db: Database, workspace_id: int, rule_id: str, actor: Actor) -> bool:
    async with db.write() as conn:
        row = await _row(conn, workspace_id, rule_id)
        if row is None:
            return False
        await conn.execute(
            delete(alert_rules).where(
                alert_rules.c.workspace_id == workspace_id, alert_rules.c.id == rule_id
            )
        )
        if row["current_firing_id"] is not None:  # no evaluation will ever resolve it now
            await _close_firing(conn, workspace_id, row["current_firing_id"])
        await audit_change(
            conn, workspace_id, "delete", "alert_rule", rule_id, actor, {"name": row["name"]}
        )
    return True


async def _close_firing(conn: AsyncConnection, workspace_id: int, firing_id: str) -> None:
    """End an open firing of a rule that will not be evaluated (deleted or disabled)."""
    await conn.execute(
        update(alert_firings)
        .where(
            alert_firings.c.workspace_id == workspace_id,
            alert_firings.c.id == firing_id,
            alert_firings.c.resolved_at.is_(None),
        )
        .values(resolved_at=clock.now())
    )


async def get_rule(db: Database, workspace_id: int, rule_id: str) -> AlertRule | None:
    async with db.read() as conn:
        row = await _row(conn, workspace_id, rule_id)
    return AlertRule.from_row(row) if row else None


async def list_rules(db: Database, workspace_id: int, first: int, after: str | None) -> Page:
    query = select(alert_rules).where(alert_rules.c.workspace_id == workspace_id)
    return await keyset_page(
        db, query, alert_rules.c.created_at, alert_rules.c.id, "ar", first, after, False
    )


async def enabled_rules(db: Database) -> list[AlertRule]:
    async with db.read() as conn:
        rows = (
            await conn.execute(
                select(alert_rules)
                .where(alert_rules.c.enabled.is_(True))
                .order_by(alert_rules.c.workspace_id, alert_rules.c.id)
            )
        ).mappings()
        return [AlertRule.from_row(r) for r in rows]


async def list_firings(
    db: Database, workspace_id: int, rule_id: str | None, first: int, after: str | None
) -> Page:
    t = alert_firings
    query = select(t).where(t.c.workspace_id == workspace_id)
    if rule_id is not None:
        query = query.where(t.c.rule_id == rule_id)
    return await keyset_page(db, query, t.c.fired_at, t.c.id, "af", first, after, True)


async def _row(conn: AsyncConnection, workspace_id: int, rule_id: str) -> dict[str, Any] | None:
    found = (
        (
            await conn.execute(
                select(alert_rules).where(
                    alert_rules.c.workspace_id == workspace_id, alert_rules.c.id == rule_id
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
        "health": values.get("health"),
        "metric": values["metric"],
        "window_seconds": values["window_seconds"],
        "calendar": values["calendar"],
        "timezone": values["timezone"],
        "operator": values["operator"],
        "threshold": values["threshold"],
        "cooldown_seconds": values["cooldown_seconds"],
        "enabled": values["enabled"],
    }
