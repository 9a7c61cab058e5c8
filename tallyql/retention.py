"""The retention job: every `retention_interval_seconds`, purge what is older than the
retention settings (see storage/retention.py), record one audit event per workspace that lost
data, and report the run in `/health` (jobs.retention, a PeriodicJob: storage/jobs.py).

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
from datetime import UTC, datetime, timedelta
from typing import Any

from tallyql.clock import clock
from tallyql.config import Settings
from tallyql.storage.audit import AuditRecord, insert_audit_records
from tallyql.storage.database import Database
from tallyql.storage.ingest.partitions import PartitionManager
from tallyql.storage.jobs import PeriodicJob, iso
from tallyql.storage.locks import Lock, held_for_session
from tallyql.storage.retention import Purger, PurgeResult
from tallyql.storage.rollups.declarations import grain_start

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


class RetentionJob(PeriodicJob):
    name = REPORT
    failing_after = FAILING_AFTER

    def __init__(
        self,
        db: Database,
        settings: Settings,
        reports: dict[str, dict[str, Any]],
        partitions: PartitionManager | None = None,
    ) -> None:
        interval = settings.retention_interval_seconds
        super().__init__(interval, reports, first_run_delay=min(interval, FIRST_RUN_MAX_DELAY))
        self.db = db
        self.settings = settings
        self.purger = Purger(db, settings.retention_batch_rows, partitions)
        self._running = asyncio.Lock()

    async def work(self) -> dict[str, Any]:
        """One purge, then the partitions ahead."""
        now = clock.now()
        raw, rollup = cutoffs(self.settings, now)
        facts: dict[str, Any] = {"raw_cutoff": iso(raw), "rollup_cutoff": iso(rollup)}
        async with self._running:
            result = await self._purge_once(raw, rollup)
        if result is None:
            facts["skipped"] = "another replica holds the retention lock"
        else:
            await self._audit(result, raw, rollup, now)
            facts["purged"] = result.totals()
        ready = await self.purger.create_ahead(now, PARTITION_DAYS_AHEAD)
        if ready is not None:
            facts["partitions_ready_until"] = ready.isoformat()
        return facts

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
                    "raw_cutoff": iso(raw),
                    "rollup_cutoff": iso(rollup),
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
