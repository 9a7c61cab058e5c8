"""Watches budgets and announces each threshold crossing exactly once per period.

Evaluation runs shortly after ingest into a workspace (debounced) and on a schedule (for the
traffic of other replicas and for new periods). A crossing is a row keyed by (budget,
period start, threshold) inserted with ON CONFLICT DO NOTHING: only the evaluation whose
insert took effect — on whichever replica, before or after a restart — writes the audit
event and the webhook deliveries (in the same transaction) and, after commit, publishes the
LIMIT_WARNING on the bus.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from tallyql.budgets.model import Budget
from tallyql.budgets.status import BudgetStatus, budget_status
from tallyql.budgets.store import all_budgets, crossed_thresholds
from tallyql.clock import clock
from tallyql.live.bus import LiveBus
from tallyql.live.subscriber import LIMIT_WARNING
from tallyql.money import to_usd
from tallyql.storage.audit import AuditRecord, record_audit
from tallyql.storage.database import Database
from tallyql.storage.dialect import insert_ignoring_duplicates
from tallyql.storage.jobs import PeriodicJob
from tallyql.storage.live_tables import budget_crossings
from tallyql.storage.types import to_micros
from tallyql.webhooks.dispatcher import WebhookDispatcher
from tallyql.webhooks.store import enqueue

log = logging.getLogger(__name__)

WEBHOOK_EVENT = "budget.limit_warning"


def warning_notice(budget: Budget, status: BudgetStatus, threshold: int) -> dict[str, Any]:
    return {
        "budget_id": budget.id,
        "budget_name": budget.name,
        "threshold": threshold,
        "percent_used": status.percent_used,
        "spend_nanousd": status.spend_nanousd,
        "amount_nanousd": budget.amount_nanousd,
        "period": budget.period.value,
        "period_start_us": to_micros(status.period_start),
        "period_end_us": to_micros(status.period_end),
        "at_us": to_micros(clock.now()),
    }


class BudgetMonitor(PeriodicJob):
    """Checks every budget each `interval_seconds`, and those of the workspaces that received
    events `debounce_seconds` after their batches (gathering the batches that follow)."""

    name = "budgets"

    def __init__(
        self,
        db: Database,
        bus: LiveBus,
        dispatcher: WebhookDispatcher,
        interval_seconds: float,
        debounce_seconds: float,
        reports: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(interval_seconds, reports)
        self._db = db
        self._bus = bus
        self._dispatcher = dispatcher
        self._debounce = debounce_seconds
        self._dirty: set[int] = set()
        self._next_full = time.monotonic()
        self.warnings = 0

    def on_batch(self, workspace_ids: set[int]) -> None:
        """A bus batch observer: these workspaces received events."""
        self._dirty |= workspace_ids
        self.notify()

    def due(self) -> bool:
        return bool(self._dirty) or time.monotonic() >= self._next_full

    def pause(self) -> float:
        return max(0.0, self._next_full - time.monotonic())

    async def work(self) -> dict[str, Any]:
        workspaces: list[int] | None = None
        if time.monotonic() >= self._next_full:
            self._next_full = time.monotonic() + self.interval
        else:
            await asyncio.sleep(self._debounce)
            workspaces = sorted(self._dirty)
        self._dirty.clear()
        return {"announced": len(await self.evaluate(workspaces))}

    def facts(self) -> dict[str, Any]:
        return {"limit_warnings": self.warnings}

    async def evaluate(
        self, workspace_ids: Sequence[int] | None = None, now: datetime | None = None
    ) -> list[dict[str, Any]]:
        """Check the budgets (of some workspaces, or all) as of `now` (default: the clock);
        returns the warnings this call announced."""
        announced: list[dict[str, Any]] = []
        for budget in await all_budgets(self._db, workspace_ids):
            try:
                announced += await self._check(budget, now)
            except Exception:
                log.exception("budget %s could not be evaluated", budget.id)
        return announced

    async def _check(self, budget: Budget, now: datetime | None) -> list[dict[str, Any]]:
        status = await budget_status(self._db, budget, now)
        reached = [
            t for t in budget.thresholds if status.spend_nanousd * 100 >= t * budget.amount_nanousd
        ]
        if not reached:
            return []
        known = set(await crossed_thresholds(self._db, budget, status.period_start))
        announced = []
        for threshold in reached:
            if threshold not in known and await self._record(budget, status, threshold):
                notice = warning_notice(budget, status, threshold)
                self._bus.publish_notice(budget.workspace_id, LIMIT_WARNING, notice)
                announced.append(notice)
                self.warnings += 1
        if announced:
            self._dispatcher.notify()
        return announced

    async def _record(self, budget: Budget, status: BudgetStatus, threshold: int) -> bool:
        """Insert the crossing; True when this call inserted it (and so announces it)."""
        insert = insert_ignoring_duplicates(self._db.dialect, budget_crossings)
        async with self._db.write() as conn:
            inserted = (
                await conn.execute(
                    insert.values(
                        workspace_id=budget.workspace_id,
                        budget_id=budget.id,
                        period_start=status.period_start,
                        threshold=threshold,
                        crossed_at=clock.now(),
                        spend_nanousd=status.spend_nanousd,
                        amount_nanousd=budget.amount_nanousd,
                    ).returning(budget_crossings.c.threshold)
                )
            ).first()
            if inserted is None:
                return False
            data = {
                "budgetId": budget.id,
                "budgetName": budget.name,
                "threshold": threshold,
                "percentUsed": round(status.percent_used, 4),
                "spendUsd": to_usd(status.spend_nanousd),
                "limitUsd": to_usd(budget.amount_nanousd),
                "period": budget.period.name,
                "periodStart": status.period_start.isoformat(),
                "periodEnd": status.period_end.isoformat(),
            }
            await record_audit(
                conn,
                AuditRecord(
                    workspace_id=budget.workspace_id,
                    action="execute",
                    resource_type="budget",
                    resource_id=budget.id,
                    details={"event": "limit_warning", **data},
                ),
            )
            await enqueue(conn, budget.workspace_id, budget.webhook_ids, WEBHOOK_EVENT, data)
        return True
