"""The heartbeat job: every few seconds this process records its health in the shared
database (storage/health_tables.py), so that a health alert rule, evaluated by whichever
process runs the alert scheduler, sees every replica's writer and jobs, not only its own.

A process that stops cleanly removes its row; one that vanished (a crash) is removed by the
others once it has been silent for `HEARTBEAT_EXPIRY`. Until then its last report stands, and
a writer that had events waiting keeps counting as stalled: nobody knows they were written.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Callable
from typing import Any

from tallyql.clock import clock
from tallyql.storage.database import Database
from tallyql.storage.ingest.writer import Writer
from tallyql.storage.jobs import PeriodicJob
from tallyql.storage.server_health import HEARTBEAT_EXPIRY, Heartbeat, beat, expire, forget

log = logging.getLogger(__name__)

REPORT = "heartbeat"


class HeartbeatJob(PeriodicJob):
    name = REPORT

    def __init__(
        self,
        db: Database,
        writer: Writer,
        degraded: Callable[[], list[str]],
        interval: float,
        reports: dict[str, dict[str, Any]],
    ) -> None:
        """`degraded`: the reasons /health gives for this process's jobs."""
        super().__init__(interval, reports)
        self.db = db
        self.writer = writer
        self.degraded = degraded
        self.instance_id = uuid.uuid4().hex
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.started_at = clock.now()

    def current(self) -> Heartbeat:
        """This process's health now."""
        writer = self.writer
        return Heartbeat(
            instance_id=self.instance_id,
            host=self.host,
            pid=self.pid,
            started_at=self.started_at,
            heartbeat_at=clock.now(),
            writer_pending_events=writer.pending_events,
            writer_oldest_pending_at=writer.oldest_pending_at,
            writer_last_commit_at=writer.stats.last_commit_at,
            writer_events_committed=writer.stats.events_committed,
            degraded=[r for r in self.degraded() if not r.startswith(f"{REPORT}:")],
        )

    async def work(self) -> dict[str, Any]:
        beat_at = self.current()
        await beat(self.db, beat_at)
        await expire(self.db, beat_at.heartbeat_at - HEARTBEAT_EXPIRY)
        return {}

    def facts(self) -> dict[str, Any]:
        return {"instance_id": self.instance_id}

    async def stopped(self) -> None:
        try:  # stopping cleanly: this process no longer holds anything up
            await asyncio.shield(forget(self.db, self.instance_id))
        except Exception:
            log.warning("could not remove this process's heartbeat", exc_info=True)
