"""One ingest transaction, on either database: new events in, duplicates out.

New events are staged in a temporary table (`BATCH_TABLE`), copied into `events`, and then
aggregated by the database into sessions and rollups (see `upsert.py`).
`PostgresBatches` speaks asyncpg directly (keys through `unnest`, rows through COPY);
`SqliteBatches` speaks to the single SQLite writer connection (executemany).
"""

from __future__ import annotations

import asyncio
import operator
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import date
from typing import Any, Protocol

import asyncpg
import orjson

from tallyql.ingest.validate import ValidEvent
from tallyql.storage.database import Database
from tallyql.storage.histogram_fold import RowRunner, SqliteRunner
from tallyql.storage.partitions import PartitionManager
from tallyql.storage.tables import EVENT_COLUMNS
from tallyql.storage.types import sqlite_value, to_micros

PAYLOAD_COLUMNS = ("workspace_id", "event_id", "ts", "request", "response")
_SQLITE_CHUNK = 400  # bound parameters per IN (...) lookup


BATCH_TABLE = "_batch"
"""Temporary table holding the batch's new events; contributors aggregate from it."""


class BatchTx(Protocol):
    async def insert_new_events(self, events: Sequence[ValidEvent]) -> list[ValidEvent]:
        """Insert events whose (workspace_id, id) is new; return those, in order. They are
        also staged in BATCH_TABLE for the rest of the transaction."""
        ...

    async def execute(self, sql: str) -> None:
        """A statement without parameters (the aggregating upserts)."""
        ...

    @property
    def runner(self) -> RowRunner:
        """The transaction for Python steps (histogram merges; SQLite only)."""
        ...


class Batches(Protocol):
    dialect: str
    lanes: int
    """Batch transactions that may run at once."""

    def transaction(self) -> Any:
        """`async with batches.transaction() as tx:` one atomic batch."""
        ...

    async def prepare(self, events: Sequence[ValidEvent]) -> None:
        """Work that must precede the batch transaction (PostgreSQL partitions)."""
        ...

    async def close(self) -> None: ...


def _json_or_none(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


_METADATA_INDEX = EVENT_COLUMNS.index("metadata")
_COLUMN_LIST = ", ".join(EVENT_COLUMNS)
_EVENT_VALUES = operator.itemgetter(*EVENT_COLUMNS)
"""A row's values in column order, in one C call (the hot loop of every batch)."""
_SQLITE_TIMES = tuple(EVENT_COLUMNS.index(c) for c in ("ts", "received_at"))
_SQLITE_JSON = tuple(EVENT_COLUMNS.index(c) for c in ("tags", "metadata"))


def _postgres_record(row: dict[str, Any]) -> list[Any]:
    values = list(_EVENT_VALUES(row))
    values[_METADATA_INDEX] = orjson.dumps(values[_METADATA_INDEX]).decode()
    return values


def _sqlite_record(row: dict[str, Any]) -> list[Any]:
    """The row as SQLite stores it (see storage/types.py): the same values `sqlite_value`
    gives, converting only the columns that need it."""
    values = list(_EVENT_VALUES(row))
    for i in _SQLITE_TIMES:
        if values[i] is not None:
            values[i] = to_micros(values[i])
    for i in _SQLITE_JSON:
        values[i] = orjson.dumps(values[i]).decode()
    return values


def _event_key(event: ValidEvent) -> tuple[int, str]:
    return event.row["workspace_id"], event.row["id"]


class _PostgresTx:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    @property
    def runner(self) -> RowRunner:
        raise NotImplementedError("the PostgreSQL writer only stages aggregates in SQL")

    async def insert_new_events(self, events: Sequence[ValidEvent]) -> list[ValidEvent]:
        if not events:
            return []
        # in key order, so that two transactions holding the same ids never deadlock
        ordered = sorted(events, key=_event_key)
        rows = await self.conn.fetch(
            "INSERT INTO event_keys (workspace_id, event_id, ts) "
            "SELECT * FROM unnest($1::int4[], $2::text[], $3::timestamptz[]) "
            "ON CONFLICT DO NOTHING RETURNING workspace_id, event_id",
            [e.row["workspace_id"] for e in ordered],
            [e.row["id"] for e in ordered],
            [e.row["ts"] for e in ordered],
        )
        new_keys = {(r["workspace_id"], r["event_id"]) for r in rows}
        new = [e for e in events if (e.row["workspace_id"], e.row["id"]) in new_keys]
        if not new:
            return []
        records = [_postgres_record(e.row) for e in new]
        await self.conn.copy_records_to_table(BATCH_TABLE, records=records, columns=EVENT_COLUMNS)
        await self.conn.execute(
            f"INSERT INTO events ({_COLUMN_LIST}) SELECT {_COLUMN_LIST} FROM {BATCH_TABLE}"
        )
        with_payload = [e for e in new if e.has_payload]
        if with_payload:
            await self.conn.copy_records_to_table(
                "payloads",
                records=[
                    (
                        e.row["workspace_id"],
                        e.row["id"],
                        e.row["ts"],
                        _json_or_none(e.request),
                        _json_or_none(e.response),
                    )
                    for e in with_payload
                ],
                columns=PAYLOAD_COLUMNS,
            )
        return new

    async def execute(self, sql: str) -> None:
        await self.conn.execute(sql)


class PostgresBatches:
    """Batches on dedicated asyncpg connections (one per writer lane), reopened when broken."""

    dialect = "postgresql"

    def __init__(self, db: Database, lanes: int = 2) -> None:
        self._dsn = db.asyncpg_dsn
        self.lanes = max(1, lanes)
        self._idle: list[asyncpg.Connection] = []
        self._partitions = PartitionManager()
        self._partition_lock = asyncio.Lock()

    async def _acquire(self) -> asyncpg.Connection:
        while self._idle:
            conn = self._idle.pop()
            if not conn.is_closed():
                return conn
        conn = await asyncpg.connect(self._dsn)
        # batches aggregate tens of thousands of rows: sort and hash in memory
        await conn.execute("SET work_mem = '64MB'")
        await conn.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {BATCH_TABLE} "
            "(LIKE events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        return conn

    def _release(self, conn: asyncpg.Connection) -> None:
        if not conn.is_closed():
            self._idle.append(conn)

    async def prepare(self, events: Sequence[ValidEvent]) -> None:
        days: set[date] = {e.row["ts"].date() for e in events}
        if self._partitions.knows(days):
            return
        async with self._partition_lock:
            conn = await self._acquire()
            try:
                await self._partitions.ensure(conn, days)
            finally:
                self._release(conn)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[BatchTx]:
        conn = await self._acquire()
        try:
            async with conn.transaction():
                yield _PostgresTx(conn)
        except (asyncpg.PostgresConnectionError, OSError):
            await conn.close()
            raise
        finally:
            self._release(conn)

    @property
    def partitions(self) -> PartitionManager:
        return self._partitions

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            if not conn.is_closed():
                await conn.close()


class _SqliteTx:
    def __init__(self, conn: Any) -> None:
        self.conn = conn  # aiosqlite.Connection
        self.runner = SqliteRunner(conn)

    async def insert_new_events(self, events: Sequence[ValidEvent]) -> list[ValidEvent]:
        if not events:
            return []
        existing: set[tuple[int, str]] = set()
        by_workspace: dict[int, list[str]] = {}
        for e in events:
            by_workspace.setdefault(e.row["workspace_id"], []).append(e.row["id"])
        for workspace_id, ids in by_workspace.items():
            for i in range(0, len(ids), _SQLITE_CHUNK):
                chunk = ids[i : i + _SQLITE_CHUNK]
                marks = ",".join("?" * len(chunk))
                cursor = await self.conn.execute(
                    f"SELECT id FROM events WHERE workspace_id = ? AND id IN ({marks})",
                    (workspace_id, *chunk),
                )
                existing.update((workspace_id, r[0]) for r in await cursor.fetchall())
        new = [e for e in events if (e.row["workspace_id"], e.row["id"]) not in existing]
        if not new:
            return []
        marks = ",".join("?" * len(EVENT_COLUMNS))
        await self.conn.executemany(
            f"INSERT INTO temp.{BATCH_TABLE} ({_COLUMN_LIST}) VALUES ({marks})",
            [_sqlite_record(e.row) for e in new],
        )
        await self.conn.execute(
            f"INSERT INTO main.events ({_COLUMN_LIST}) "
            f"SELECT {_COLUMN_LIST} FROM temp.{BATCH_TABLE}"
        )
        with_payload = [e for e in new if e.has_payload]
        if with_payload:
            await self.conn.executemany(
                f"INSERT INTO payloads ({','.join(PAYLOAD_COLUMNS)}) VALUES (?,?,?,?,?)",
                [
                    (
                        e.row["workspace_id"],
                        e.row["id"],
                        sqlite_value(e.row["ts"]),
                        _json_or_none(e.request),
                        _json_or_none(e.response),
                    )
                    for e in with_payload
                ],
            )
        return new

    async def execute(self, sql: str) -> None:
        await self.conn.execute(sql)


class SqliteBatches:
    """Batches on the single SQLite writer connection (shared with administrative writes)."""

    dialect = "sqlite"
    lanes = 1

    def __init__(self, db: Database) -> None:
        self._db = db

    async def prepare(self, events: Sequence[ValidEvent]) -> None:
        return None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[BatchTx]:
        async with self._db.writer.connect() as sa_conn:
            raw = await sa_conn.get_raw_connection()
            conn = raw.driver_connection
            await conn.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {BATCH_TABLE} AS "
                "SELECT * FROM main.events WHERE 0"
            )
            await conn.execute("BEGIN IMMEDIATE")
            try:
                await conn.execute(f"DELETE FROM temp.{BATCH_TABLE}")
                yield _SqliteTx(conn)
                await conn.execute(f"DELETE FROM temp.{BATCH_TABLE}")
            except BaseException:
                await conn.rollback()
                raise
            await conn.commit()

    async def close(self) -> None:
        return None


def batches_for(db: Database, lanes: int = 2) -> Batches:
    """The writer's database side; `lanes` transactions at once on PostgreSQL (SQLite: one)."""
    return PostgresBatches(db, lanes) if db.is_postgres else SqliteBatches(db)
