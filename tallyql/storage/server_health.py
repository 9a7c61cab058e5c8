"""The server's health as the shared database holds it: each process's heartbeat
(storage/health_tables.py) and the age of the oldest rollup row waiting for compaction."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, text, update

from tallyql.storage.database import Database
from tallyql.storage.health_tables import server_heartbeats
from tallyql.storage.rollups.declarations import DELTA_TABLES


@dataclass(frozen=True)
class Heartbeat:
    """One process's health as it last reported it."""

    instance_id: str
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    writer_pending_events: int
    writer_oldest_pending_at: datetime | None
    writer_last_commit_at: datetime | None
    writer_events_committed: int
    degraded: list[str]

    @classmethod
    def from_row(cls, row: Any) -> Heartbeat:
        return cls(**{k: row[k] for k in cls.__dataclass_fields__})


async def beat(db: Database, heartbeat: Heartbeat) -> None:
    """Record this process's heartbeat (only this process writes its row)."""
    values = asdict(heartbeat)
    async with db.write() as conn:
        done = await conn.execute(
            update(server_heartbeats)
            .where(server_heartbeats.c.instance_id == heartbeat.instance_id)
            .values(**values)
        )
        if done.rowcount == 0:
            await conn.execute(server_heartbeats.insert().values(**values))


async def forget(db: Database, instance_id: str) -> None:
    """A process stopping cleanly takes its heartbeat away."""
    async with db.write() as conn:
        await conn.execute(
            delete(server_heartbeats).where(server_heartbeats.c.instance_id == instance_id)
        )


async def expire(db: Database, before: datetime) -> int:
    """Remove the heartbeats of processes silent since `before` (they ended without saying
    so: a crash, a killed container); how many."""
    async with db.write() as conn:
        done = await conn.execute(
            delete(server_heartbeats).where(server_heartbeats.c.heartbeat_at < before)
        )
    return int(done.rowcount or 0)


async def heartbeats(db: Database) -> list[Heartbeat]:
    async with db.read() as conn:
        rows = (
            await conn.execute(select(server_heartbeats).order_by(server_heartbeats.c.instance_id))
        ).mappings()
        return [Heartbeat.from_row(r) for r in rows]


async def oldest_staged_seconds(db: Database) -> float:
    """How long the oldest rollup row still staged for compaction has waited, in seconds, on
    the database's clock (`staged_at` is the staging transaction's start); 0 when nothing is
    staged. SQLite folds every batch into the rollups in its own transaction: always 0.
    Reads every delta table whole, as every analytics query does."""
    if not db.dialect.staged_deltas:
        return 0.0
    oldest = " UNION ALL ".join(f"SELECT min(staged_at) AS m FROM {t}" for t in DELTA_TABLES)
    sql = f"SELECT EXTRACT(EPOCH FROM now() - min(m)) FROM ({oldest}) AS staged"
    async with db.read() as conn:
        lag = (await conn.execute(text(sql))).scalar_one()
    return max(0.0, float(lag)) if lag is not None else 0.0


HEARTBEAT_EXPIRY = timedelta(minutes=10)
"""A process silent this long is taken for gone: its heartbeat is removed (see `expire`)."""
