"""Health alert rules watch the server itself, not a workspace's traffic: every replica's
writer (from the heartbeats each process records in the shared database), compaction (from
the oldest staged rollup row) and the jobs /health calls degraded. Whichever process
evaluates a rule reads the same rows, so it sees every replica, on PostgreSQL and on SQLite.

How to add a condition: a member of `HealthCondition` (its unit in `UNITS`), a branch in
`HealthProbe.read`, its description in tallyql/schema/live_types.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

from tallyql.storage.database import Database
from tallyql.storage.server_health import Heartbeat, heartbeats, oldest_staged_seconds

SILENT_AFTER_BEATS = 3
"""A process whose last heartbeat is older than this many heartbeat intervals is silent: the
time since it was last heard of counts towards its writer's stall (its waiting events may
never be written), until `HEARTBEAT_EXPIRY` removes it."""


DEFAULT_HEARTBEAT_SECONDS = 5.0
"""The interval replicas are judged by when this process records no heartbeat itself."""


class HealthCondition(Enum):
    WRITER_STALL_SECONDS = "writer_stall_seconds"
    """The longest any replica's writer has held accepted events without committing a batch."""
    WRITER_BACKLOG_EVENTS = "writer_backlog_events"
    """The most events accepted and not yet committed by one replica's writer."""
    COMPACTION_LAG_SECONDS = "compaction_lag_seconds"
    """How long the oldest rollup row staged for compaction has waited (PostgreSQL)."""
    JOBS_DEGRADED = "jobs_degraded"
    """Background jobs /health calls degraded, over every replica."""


UNITS = {
    HealthCondition.WRITER_STALL_SECONDS: "seconds",
    HealthCondition.WRITER_BACKLOG_EVENTS: "events",
    HealthCondition.COMPACTION_LAG_SECONDS: "seconds",
    HealthCondition.JOBS_DEGRADED: "jobs",
}


@dataclass(frozen=True)
class HealthReading:
    value: float
    """In the condition's unit (`UNITS`)."""
    detail: dict[str, Any] = field(default_factory=dict)
    """What the notification adds: per replica figures, the degraded jobs' reasons."""


def writer_stall_seconds(beat: Heartbeat, now: datetime, heartbeat_seconds: float) -> float:
    """Seconds the replica's writer has held accepted events without a commit: since its last
    commit or since the oldest waiting event was accepted, whichever is later; 0 when nothing
    waits. Measured at the replica's last heartbeat; a silent replica's silence counts too."""
    if beat.writer_pending_events <= 0 or beat.writer_oldest_pending_at is None:
        return 0.0
    since = beat.writer_oldest_pending_at
    if beat.writer_last_commit_at is not None and beat.writer_last_commit_at > since:
        since = beat.writer_last_commit_at
    silent = (now - beat.heartbeat_at).total_seconds() > SILENT_AFTER_BEATS * heartbeat_seconds
    until = now if silent else beat.heartbeat_at
    return max(0.0, (until - since).total_seconds())


def _replica(beat: Heartbeat, now: datetime, value: float) -> dict[str, Any]:
    return {
        "instanceId": beat.instance_id,
        "host": beat.host,
        "pid": beat.pid,
        "value": value,
        "heartbeatSecondsAgo": round((now - beat.heartbeat_at).total_seconds(), 3),
    }


class HealthProbe:
    """The server's health for one evaluation round: the heartbeats are read once, whatever
    the number of health rules."""

    def __init__(self, db: Database, now: datetime, heartbeat_seconds: float) -> None:
        self._db = db
        self._now = now
        self._interval = heartbeat_seconds if heartbeat_seconds > 0 else DEFAULT_HEARTBEAT_SECONDS
        self._beats: list[Heartbeat] | None = None

    async def _heartbeats(self) -> list[Heartbeat]:
        if self._beats is None:
            self._beats = await heartbeats(self._db)
        return self._beats

    async def read(self, condition: HealthCondition) -> HealthReading:
        now = self._now
        if condition is HealthCondition.COMPACTION_LAG_SECONDS:
            return HealthReading(round(await oldest_staged_seconds(self._db), 3))
        beats = await self._heartbeats()
        if condition is HealthCondition.JOBS_DEGRADED:
            reasons = [f"{b.host} pid {b.pid}: {r}" for b in beats for r in b.degraded]
            return HealthReading(float(len(reasons)), {"reasons": reasons})
        if condition is HealthCondition.WRITER_STALL_SECONDS:
            values = [round(writer_stall_seconds(b, now, self._interval), 3) for b in beats]
        else:
            values = [float(b.writer_pending_events) for b in beats]
        replicas = [_replica(b, now, v) for b, v in zip(beats, values, strict=True)]
        return HealthReading(max(values, default=0.0), {"replicas": replicas})
