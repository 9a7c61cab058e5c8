"""Purging expired data in bounded batches, each its own short transaction (and, on
PostgreSQL, creating the coming days' partitions ahead of ingest).

Raw data (events, payloads, PostgreSQL's idempotency keys, audit events, and sessions whose
last activity is older than the cutoff) expires at the raw cutoff; rollup rows (hour, day and
week, histograms and PostgreSQL's uncompacted deltas too) at the rollup cutoff. On
PostgreSQL, events and payloads go a whole day partition at a time: detached CONCURRENTLY
(queries and ingest keep running) and dropped. On SQLite they go in batches of rowids through
the (workspace_id, ts) indexes.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy import bindparam, delete, select, text
from sqlalchemy.sql.elements import BindParameter

from tallyql.storage.data_versions import bump
from tallyql.storage.database import Database
from tallyql.storage.dialect import limited_delete_sql
from tallyql.storage.ingest.partitions import PARTITIONED_TABLES, PartitionManager, day_of_partition
from tallyql.storage.locks import Lock, hold
from tallyql.storage.rollups.declarations import DELTA_TABLES, ROLLUP_TABLES
from tallyql.storage.rollups.session_versions import stamp_sessions
from tallyql.storage.tables import session_models, sessions, workspaces
from tallyql.storage.types import UtcDateTime

log = logging.getLogger(__name__)

RAW_TABLES = (
    "events",
    "payloads",
    "event_keys",
    "audit_events",
    "sessions",
    "metric_points",
    "rollup_rows",
)


@dataclass
class PurgeResult:
    by_workspace: dict[int, dict[str, int]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(int))
    )
    partitions_dropped: list[str] = field(default_factory=list)
    event_keys: int = 0
    """PostgreSQL's idempotency keys deleted (kept across workspaces)."""

    def add(self, workspace_id: int, what: str, count: int) -> None:
        if count:
            self.by_workspace[workspace_id][what] += count

    def totals(self) -> dict[str, int]:
        out = dict.fromkeys(RAW_TABLES, 0)
        for counts in self.by_workspace.values():
            for what, n in counts.items():
                out[what] = out.get(what, 0) + n
        out["event_keys"] = self.event_keys
        out["partitions_dropped"] = len(self.partitions_dropped)
        return out


class Purger:
    def __init__(
        self, db: Database, batch_rows: int, partitions: PartitionManager | None = None
    ) -> None:
        self.db = db
        self.batch_rows = batch_rows
        self.partitions = partitions

    async def purge(
        self, raw_cutoff: datetime | None, rollup_cutoff: datetime | None
    ) -> PurgeResult:
        """Delete raw data before `raw_cutoff` and rollup rows before `rollup_cutoff` (None:
        keep that kind)."""
        result = PurgeResult()
        async with self.db.read() as conn:
            ids = sorted((await conn.execute(select(workspaces.c.id))).scalars())
        if raw_cutoff is not None:
            if self.db.dialect.day_partitions:
                await self._drop_partitions(raw_cutoff, result)
                result.event_keys = await self._delete_all(
                    "event_keys", "ts < :cutoff", {"cutoff": raw_cutoff}
                )
            for ws in ids:
                await self._purge_raw(ws, raw_cutoff, result)
        if rollup_cutoff is not None:
            period = int(rollup_cutoff.timestamp())
            deltas = sorted(DELTA_TABLES) if self.db.dialect.staged_deltas else []
            # deltas first, each batch under the compaction lock: a compaction in flight
            # has then moved its rows into the rollup tables, which are purged after
            for ws in ids:
                for table in [*deltas, *sorted(ROLLUP_TABLES)]:
                    n = await self._delete_all(
                        table,
                        "workspace_id = :ws AND period < :period",
                        {"period": period},
                        ws,
                        lock=table in DELTA_TABLES,
                    )
                    result.add(ws, "rollup_rows", n)
        # after the purges' own transactions: an answer kept meanwhile may still show what
        # went; the workspaces' next version leaves it (storage/data_versions.py)
        touched = sorted(result.by_workspace)
        if touched:
            async with self.db.write() as conn:
                await bump(conn, touched)
        return result

    async def create_ahead(self, now: datetime, days: int) -> date | None:
        """PostgreSQL: make sure the day partitions of today and the next `days` days exist,
        so that ingest seldom creates one itself (creating one locks the parent table for a
        moment). Returns the last day made ready (None on SQLite)."""
        if not self.db.dialect.day_partitions:
            return None
        today = now.astimezone(UTC).date()
        wanted = {today + timedelta(days=i) for i in range(days + 1)}
        manager = self.partitions or PartitionManager()
        conn = await asyncpg.connect(self.db.asyncpg_dsn)
        try:
            await manager.ensure(conn, wanted)
        finally:
            await conn.close()
        return max(wanted)

    async def _purge_raw(self, ws: int, cutoff: datetime, result: PurgeResult) -> None:
        where = "workspace_id = :ws AND ts < :cutoff"
        if not self.db.dialect.day_partitions:  # whole day partitions were dropped instead
            for table in PARTITIONED_TABLES:
                result.add(ws, table, await self._delete_all(table, where, {"cutoff": cutoff}, ws))
        n = await self._delete_all("audit_events", where, {"cutoff": cutoff}, ws)
        result.add(ws, "audit_events", n)
        # coding agents' metric points (/v1/metrics) are raw data too, kept as long as events
        n = await self._delete_all("metric_points", where, {"cutoff": cutoff}, ws)
        result.add(ws, "metric_points", n)
        result.add(ws, "sessions", await self._delete_sessions(ws, cutoff))

    async def _delete_all(
        self,
        table: str,
        where: str,
        params: dict[str, Any],
        workspace_id: int | None = None,
        lock: bool = False,
    ) -> int:
        """Batch after batch until none is left; returns the rows deleted. `lock`: each batch
        holds the compaction lock (PostgreSQL's staged deltas)."""
        statement = text(limited_delete_sql(self.db.dialect, table, where))
        binds: list[BindParameter[Any]] = [bindparam("n", self.batch_rows)]
        if "cutoff" in params:
            binds.append(bindparam("cutoff", params["cutoff"], type_=UtcDateTime()))
        if "period" in params:
            binds.append(bindparam("period", params["period"]))
        if workspace_id is not None:
            binds.append(bindparam("ws", workspace_id))
        statement = statement.bindparams(*binds)
        total = 0
        while True:
            async with self.db.write() as conn:
                if lock:
                    await hold(conn, Lock.COMPACTION)
                deleted = (await conn.execute(statement)).rowcount
            total += deleted
            if deleted < self.batch_rows:
                return total
            await asyncio.sleep(0)  # let ingest take the writer between batches

    async def _delete_sessions(self, workspace_id: int, cutoff: datetime) -> int:
        """Sessions whose last activity is before the cutoff, with their per-model rows."""
        total = 0
        while True:
            async with self.db.write() as conn:
                ids = list(
                    (
                        await conn.execute(
                            select(sessions.c.id)
                            .where(
                                sessions.c.workspace_id == workspace_id,
                                sessions.c.last_ts < cutoff,
                            )
                            .limit(self.batch_rows)
                        )
                    ).scalars()
                )
                if ids:
                    await stamp_sessions(conn, self.db.dialect, workspace_id, ids)
                    await conn.execute(
                        delete(session_models).where(
                            session_models.c.workspace_id == workspace_id,
                            session_models.c.session_id.in_(ids),
                        )
                    )
                    await conn.execute(
                        delete(sessions).where(
                            sessions.c.workspace_id == workspace_id, sessions.c.id.in_(ids)
                        )
                    )
            total += len(ids)
            if len(ids) < self.batch_rows:
                return total
            await asyncio.sleep(0)

    async def _drop_partitions(self, cutoff: datetime, result: PurgeResult) -> None:
        """Detach (concurrently) and drop every day partition wholly before the cutoff."""
        last_day = cutoff.astimezone(UTC).date()
        conn = await asyncpg.connect(self.db.asyncpg_dsn)
        try:
            expired = await _expired_tables(conn, last_day)
            days = {day for _, _, day, _ in expired}
            if self.partitions is not None:
                self.partitions.forget(days)
            for parent, name, _, attached in expired:
                counts = await conn.fetch(
                    f'SELECT workspace_id, count(*) AS n FROM "{name}" GROUP BY 1'
                )
                if attached:
                    await _detach(conn, parent, name)
                await conn.execute(f'DROP TABLE IF EXISTS "{name}"')
                for row in counts:
                    result.add(row["workspace_id"], parent, int(row["n"]))
                result.partitions_dropped.append(name)
            if self.partitions is not None:
                self.partitions.forget(days)
        finally:
            await conn.close()


async def _expired_tables(
    conn: asyncpg.Connection, last_day: date
) -> list[tuple[str, str, date, bool]]:
    """(parent, table, day, still attached) of every day table of events and payloads before
    `last_day`, including tables left detached by an interrupted purge."""
    rows = await conn.fetch(
        "SELECT c.relname, p.relname AS parent FROM pg_class c "
        "LEFT JOIN pg_inherits i ON i.inhrelid = c.oid "
        "LEFT JOIN pg_class p ON p.oid = i.inhparent "
        "WHERE c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace "
        "AND (c.relname LIKE 'events\\_p%' OR c.relname LIKE 'payloads\\_p%')"
    )
    out = []
    for row in rows:
        name: str = row["relname"]
        base = name.rpartition("_p")[0]
        day = day_of_partition(name)
        if base not in PARTITIONED_TABLES or day is None or day >= last_day:
            continue
        out.append((base, name, day, row["parent"] == base))
    return sorted(out, key=lambda t: (t[2], t[0]))


async def _detach(conn: asyncpg.Connection, parent: str, name: str) -> None:
    try:
        await conn.execute(f'ALTER TABLE {parent} DETACH PARTITION "{name}" CONCURRENTLY')
    except asyncpg.PostgresError as exc:
        if "pending" not in str(exc):
            raise
        # an earlier purge was interrupted halfway through detaching: finish it
        await conn.execute(f'ALTER TABLE {parent} DETACH PARTITION "{name}" FINALIZE')
