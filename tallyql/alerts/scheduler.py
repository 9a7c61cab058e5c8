"""Evaluates every enabled alert rule on a schedule, through the engine.

A rule's metric is read over its window ending now; a health rule's condition is read from the
shared database (alerts/health.py), once per round whatever the number of health rules.
OK -> FIRING when the condition holds and the cooldown since the last firing has passed;
FIRING -> OK when it no longer holds.
Each transition is an UPDATE guarded by the rule's `state_version`, so when replicas
evaluate the same rule concurrently exactly one of them records it: a firing (or its
resolution) in `alert_firings`, webhook deliveries in the same transaction, and after commit
an ALERT on the bus.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import update

from tallyql.alerts.health import UNITS, HealthProbe
from tallyql.alerts.model import AlertRule, AlertState, holds, window_start
from tallyql.alerts.store import enabled_rules
from tallyql.clock import clock
from tallyql.engine.analytics import Asker
from tallyql.engine.query.scope import Scope
from tallyql.engine.query.timerange import TimeWindow
from tallyql.live.bus import LiveBus
from tallyql.live.subscriber import ALERT
from tallyql.storage.database import Database
from tallyql.storage.jobs import PeriodicJob
from tallyql.storage.live_tables import alert_firings, alert_rules
from tallyql.storage.types import to_micros
from tallyql.webhooks.dispatcher import WebhookDispatcher
from tallyql.webhooks.store import enqueue

log = logging.getLogger(__name__)


class AlertScheduler(PeriodicJob):
    name = "alerts"

    def __init__(
        self,
        db: Database,
        bus: LiveBus,
        dispatcher: WebhookDispatcher,
        interval_seconds: float,
        heartbeat_seconds: float = 5.0,
        reports: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        """`heartbeat_seconds`: how often replicas record their health (a replica silent for
        several intervals counts as stalled while its events wait)."""
        super().__init__(interval_seconds, reports)
        self._db = db
        self._heartbeat_seconds = heartbeat_seconds
        self._bus = bus
        self._dispatcher = dispatcher

    async def work(self) -> dict[str, Any]:
        return {"transitions": len(await self.evaluate_all())}

    def pause(self) -> float:
        return max(0.0, self.interval - self.seconds)  # one round per interval, not per pause

    async def evaluate_all(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """Evaluate every enabled rule; returns the transitions this call recorded."""
        now = now or clock.now()
        notices: list[dict[str, Any]] = []
        probe = HealthProbe(self._db, now, self._heartbeat_seconds)
        for rule in await enabled_rules(self._db):
            try:
                notice = await self.evaluate(rule, now, probe)
            except Exception:
                log.exception("alert rule %s could not be evaluated", rule.id)
                continue
            if notice is not None:
                notices.append(notice)
        if notices:
            self._dispatcher.notify()
        return notices

    async def evaluate(
        self, rule: AlertRule, now: datetime, probe: HealthProbe | None = None
    ) -> dict[str, Any] | None:
        """Measure the rule at `now`; the transition it recorded, if any."""
        detail: dict[str, Any] = {}
        if rule.health is not None:
            reading = await (probe or HealthProbe(self._db, now, self._heartbeat_seconds)).read(
                rule.health
            )
            value: float | None = reading.value
            detail = reading.detail
        else:
            assert rule.metric is not None
            # a calendar window that starts this very instant still needs a length
            start = min(window_start(rule, now), now - timedelta(microseconds=1))
            window = TimeWindow(start, now, ZoneInfo(rule.timezone))
            asker = Asker(self._db, Scope.of(rule.workspace_id), window, rule.filter)
            value = (await asker.run((rule.metric,))).value((0,), rule.metric)
        condition = holds(rule.operator, value, rule.threshold)
        cooled = rule.last_fired_at is None or now - rule.last_fired_at >= timedelta(
            seconds=rule.cooldown_seconds
        )
        if rule.state is AlertState.OK and condition and cooled:
            notice = await self._transition(rule, now, value, AlertState.FIRING, detail)
        elif rule.state is AlertState.FIRING and not condition:
            notice = await self._transition(rule, now, value, AlertState.OK, detail)
        else:
            notice = None
            async with self._db.write() as conn:
                await conn.execute(
                    update(alert_rules)
                    .where(*_key(rule))
                    .values(last_value=value, last_evaluated_at=now)
                )
        if notice is not None:
            self._bus.publish_notice(rule.workspace_id, ALERT, notice)
        return notice

    async def _transition(
        self,
        rule: AlertRule,
        now: datetime,
        value: float | None,
        to: AlertState,
        detail: dict[str, Any],
    ) -> dict[str, Any] | None:
        firing = to is AlertState.FIRING
        firing_id = uuid.uuid4().hex if firing else rule.current_firing_id
        changes: dict[str, Any] = {
            "state": to.value,
            "state_version": rule.state_version + 1,
            "current_firing_id": firing_id if firing else None,
            "last_value": value,
            "last_evaluated_at": now,
        }
        if firing:
            changes["last_fired_at"] = now
        async with self._db.write() as conn:
            result = await conn.execute(
                update(alert_rules)
                .where(*_key(rule), alert_rules.c.state_version == rule.state_version)
                .values(**changes)
            )
            if result.rowcount != 1:
                return None  # another replica recorded this transition
            if firing:
                await conn.execute(
                    alert_firings.insert().values(
                        workspace_id=rule.workspace_id,
                        id=firing_id,
                        rule_id=rule.id,
                        rule_name=rule.name,
                        metric=_watched(rule),
                        health=rule.health.value if rule.health else None,
                        operator=rule.operator.value,
                        threshold=rule.threshold,
                        window_seconds=_measured_seconds(rule, now),
                        value=value,
                        fired_at=now,
                    )
                )
            elif firing_id is not None:
                await conn.execute(
                    update(alert_firings)
                    .where(
                        alert_firings.c.workspace_id == rule.workspace_id,
                        alert_firings.c.id == firing_id,
                    )
                    .values(resolved_at=now, resolved_value=value)
                )
            data = {
                "ruleId": rule.id,
                "ruleName": rule.name,
                "firingId": firing_id,
                "state": to.name,
                "metric": rule.metric.value if rule.metric else None,
                "operator": rule.operator.name,
                "threshold": rule.threshold,
                "value": value,
                "windowMinutes": _measured_seconds(rule, now) / 60,
                "calendarWindow": rule.calendar.name if rule.calendar else None,
                "at": now.isoformat(),
            }
            if rule.health is not None:
                data |= {"health": rule.health.name, "unit": UNITS[rule.health], **detail}
            event = "alert.firing" if firing else "alert.resolved"
            await enqueue(conn, rule.workspace_id, rule.webhook_ids, event, data)
        return {
            "rule_id": rule.id,
            "rule_name": rule.name,
            "firing_id": firing_id,
            "state": to.value,
            "metric": rule.metric.value if rule.metric else None,
            "health": rule.health.value if rule.health else None,
            "operator": rule.operator.value,
            "threshold": rule.threshold,
            "value": value,
            "window_seconds": _measured_seconds(rule, now),
            "at_us": to_micros(now),
        }


def _watched(rule: AlertRule) -> str:
    """The firing's `metric` column: the metric, or a health rule's condition."""
    return rule.health.value if rule.health else rule.metric.value if rule.metric else ""


def _measured_seconds(rule: AlertRule, now: datetime) -> int:
    """How long the window measured at `now` was (a calendar rule's grows through its period;
    a health rule's is the instant: 0)."""
    if rule.health is not None:
        return 0
    return max(0, round((now - window_start(rule, now)).total_seconds()))


def _key(rule: AlertRule) -> tuple[Any, ...]:
    return (alert_rules.c.workspace_id == rule.workspace_id, alert_rules.c.id == rule.id)
