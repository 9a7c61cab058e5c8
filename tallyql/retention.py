"""The retention job: every `retention_interval_seconds`, purge what is older than the
retention settings (see storage/retention.py), record one audit event per workspace that lost
data, and report the run in `/health` (jobs.retention).

Cutoffs are whole UTC days, so both databases keep exactly the same data: raw data before
midnight UTC of (now - retention_days) goes, and rollup rows before midnight UTC of
(now - rollup_retention_days), never later than the raw cutoff (rollups outlive raw events,
never the reverse, or the planner would read zeros where raw events exist), and moved back to
the Monday that starts its week (week rows and their day rows expire together). A setting of 0 or
less keeps that kind of data forever (raw kept forever keeps rollups too). On PostgreSQL an
advisory lock lets one replica purge at a time, and each run also creates the day partitions
of today and the next two days ahead of ingest.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from tallyql.clock import clock
from tallyql.config import Settings
from tallyql.storage.audit import AuditRecord, insert_audit_records
from tallyql.storage.database import Database
from tallyql.storage.ingest.partitions import PartitionManager
from tallyql.storage.locks import Lock, held_for_session
from tallyql.storage.retention import Purger, PurgeResult
from tallyql.storage.rollups.declarations import grain_start

log = logging.getLogger(__name__)

REPORT = "retention"
FIRST_RUN_MAX_DELAY = 300.0
PARTITION_DAYS_AHEAD = 2
FAILING_AFTER = 2
"""Consecutive failed runs (hours apart by default) after which /health reports the job."""


def day_floor(value: datetime) -> datetime:
    value = value.astimezone(UTC)
    return value.replace(hour=0, minute=0, second=0, microsecond=0)


def cutoffs(settings: Settings, now: datetime) -> tuple[datetime | None, datetime | None]:
    """(raw cutoff, rollup cutoff); None keeps that kind of data."""
    raw = (
        day_floor(now - timedelta(days=settings.retention_days))
        if settings.retention_days > 0
        else None
    )
    rollup = (
        day_floor(now - timedelta(days=settings.rollup_retention_days))
        if settings.rollup_retention_days > 0
        else None
    )
    if raw is None or rollup is None:  # rollups live at least as long as raw events
        return raw, None
    # on a week start (Monday 00:00 UTC), so that no week row keeps days that day rows lost
    start = grain_start("w", int(min(rollup, raw).timestamp()))
    return raw, datetime.fromtimestamp(start, UTC)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


class RetentionJob:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        reports: dict[str, dict[str, Any]],
        partitions: PartitionManager | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.reports = reports
        self.purger = Purger(db, settings.retention_batch_rows, partitions)
        self._running = asyncio.Lock()
        self.consecutive_failures = 0

    async def run_forever(self) -> None:
        interval = self.settings.retention_interval_seconds
        await asyncio.sleep(min(interval, FIRST_RUN_MAX_DELAY))
        while True:
            await self.run_once()
            await asyncio.sleep(interval)

    async def run_once(self, now: datetime | None = None) -> dict[str, Any]:
        """One purge; never raises (a failure is logged and reported)."""
        now = now or clock.now()
        raw, rollup = cutoffs(self.settings, now)
        started = time.perf_counter()
        report: dict[str, Any] = {
            "last_run": _iso(now),
            "raw_cutoff": _iso(raw),
            "rollup_cutoff": _iso(rollup),
        }
        try:
            async with self._running:
                result = await self._purge_once(raw, rollup)
            if result is None:
                report |= {"ok": True, "skipped": "another replica holds the retention lock"}
            else:
                await self._audit(result, raw, rollup, now)
                report |= {"ok": True, "purged": result.totals()}
            ready = await self.purger.create_ahead(now, PARTITION_DAYS_AHEAD)
            if ready is not None:
                report["partitions_ready_until"] = ready.isoformat()
            self.consecutive_failures = 0
        except Exception as exc:
            log.exception("retention purge failed")
            report |= {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            self.consecutive_failures += 1
        report["consecutive_failures"] = self.consecutive_failures
        if self.consecutive_failures >= FAILING_AFTER:
            # /health reports the job degraded: data past the retention window stays
            report["degraded"] = f"failed {self.consecutive_failures} runs in a row"
        report["seconds"] = round(time.perf_counter() - started, 3)
        interval = self.settings.retention_interval_seconds
        if interval > 0:
            report["next_run"] = _iso(clock.now() + timedelta(seconds=interval))
        self.reports[REPORT] = report
        return report

    async def _purge_once(
        self, raw: datetime | None, rollup: datetime | None
    ) -> PurgeResult | None:
        async with held_for_session(self.db, Lock.RETENTION) as held:
            return await self.purger.purge(raw, rollup) if held else None

    async def _audit(
        self, result: PurgeResult, raw: datetime | None, rollup: datetime | None, now: datetime
    ) -> None:
        records = [
            AuditRecord(
                workspace_id=workspace_id,
                action="delete",
                resource_type="retention",
                actor_id="retention",
                actor_type="system",
                details={
                    "raw_cutoff": _iso(raw),
                    "rollup_cutoff": _iso(rollup),
                    "retention_days": self.settings.retention_days,
                    "rollup_retention_days": self.settings.rollup_retention_days,
                    "purged": dict(sorted(counts.items())),
                },
                ts=now,
            )
            for workspace_id, counts in sorted(result.by_workspace.items())
            if any(counts.values())
        ]
        if records:
            async with self.db.write() as conn:
                await insert_audit_records(conn, records)
