"""One ingest transaction, on either database: new events in, duplicates out.

A batch's events are staged in a temporary table (`BATCH_TABLE`); those whose (workspace_id,
id) is new are copied into `events`, and the writer's steps (`WriterStep`: a
`rollup_folds.Step`, an aggregating statement or on SQLite a Python step such as a histogram
merge, or an `OnlyIf` statement) fold them into sessions and rollups in the same transaction.
`PostgresBatches` speaks asyncpg directly (rows through COPY, the rest in one round trip);
`SqliteBatches` speaks to the single SQLite writer connection (executemany).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol, assert_never

import asyncpg
import orjson

from tallyql.storage.data_versions import (
    MAINTENANCE_SLOT,
    WRITER_SLOTS,
    batch_bump_sql,
    writer_slot,
)
from tallyql.storage.database import Database
from tallyql.storage.dialect import Dialect
from tallyql.storage.ingest.partitions import PartitionManager
from tallyql.storage.ingest.record import (
    DEPARTMENT,
    ID,
    METADATA,
    TAGS,
    TS,
    USER,
    WORKSPACE,
    ValidEvent,
)
from tallyql.storage.rollups.folds import Step
from tallyql.storage.rollups.histograms import SqliteRunner
from tallyql.storage.tables import EVENT_COLUMNS
from tallyql.storage.types import sqlite_value, to_micros

PAYLOAD_COLUMNS = ("workspace_id", "event_id", "ts", "request", "response")
_SQLITE_CHUNK = 400  # bound parameters per IN (...) lookup


BATCH_TABLE = "_batch"
"""Temporary table holding the batch's new events; the steps aggregate from it."""


@dataclass(frozen=True)
class OnlyIf:
    """A statement the batch runs only when one of its events holds `value` at record
    position `column`: run for every batch, a statement that rarely finds anything (the
    audit events of blocked calls) costs a scan of the whole batch table each time."""

    sql: str
    column: int
    value: object

    def wanted(self, events: Sequence[ValidEvent]) -> bool:
        column, value = self.column, self.value
        return any(e.record[column] == value for e in events)


WriterStep = Step | OnlyIf
"""What a writer contributor gives the batch: a step, or a statement run only when needed."""


class Batches(Protocol):
    dialect: Dialect
    lanes: int
    """Batch transactions that may run at once."""

    async def write(
        self, events: Sequence[ValidEvent], steps: Sequence[WriterStep]
    ) -> list[ValidEvent]:
        """In one transaction: store the events whose (workspace_id, id) is new, run the
        steps over them, commit. Returns the new events, in order."""
        ...

    async def ensure_days(self, days: set[date]) -> None:
        """Make the storage for events of these UTC days ready (PostgreSQL partitions)."""
        ...

    async def close(self) -> None: ...


def _json_or_none(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


_COLUMN_LIST = ", ".join(EVENT_COLUMNS)


def _users_of(events: Sequence[ValidEvent]) -> dict[int, set[str]]:
    """The users the events name, by workspace."""
    users: dict[int, set[str]] = {}
    for event in events:
        user = event.record[USER]
        if user is not None:
            users.setdefault(event.record[WORKSPACE], set()).add(user)
    return users


def _set_departments(events: Sequence[ValidEvent], found: dict[tuple[int, str], str]) -> None:
    """Stamp each event with its user's department as the users table holds it now, at
    ingest (None for a user without one). Done on the records before they are staged, so that
    the batch table is written once (an UPDATE of the staged rows rewrote every row with a
    user, a tenth of the database's cost per event) and commit listeners, such as live
    subscriptions, read the same value."""
    for event in events:
        record = event.record
        if record[USER] is not None:
            record[DEPARTMENT] = found.get((record[WORKSPACE], record[USER]))


_PG_DEPARTMENTS = (
    "SELECT u.workspace_id, u.id, u.department FROM users AS u "
    "JOIN unnest($1::int[], $2::text[]) AS k(workspace_id, id) "
    "ON u.workspace_id = k.workspace_id AND u.id = k.id WHERE u.department IS NOT NULL"
)
"""The departments of the batch's users (workspace ids and user ids as parallel arrays)."""


_SQLITE_TIMES = tuple(EVENT_COLUMNS.index(c) for c in ("ts", "received_at"))
_SQLITE_JSON = (TAGS, METADATA)


def _postgres_record(record: list[Any]) -> list[Any]:
    """The record as COPY sends it (metadata as JSON text)."""
    values = list(record)
    values[METADATA] = orjson.dumps(values[METADATA]).decode()
    return values


def _sqlite_record(record: list[Any]) -> list[Any]:
    """The record as SQLite stores it (see storage/types.py): the same values `sqlite_value`
    gives, converting only the columns that need it."""
    values = list(record)
    for i in _SQLITE_TIMES:
        if values[i] is not None:
            values[i] = to_micros(values[i])
    for i in _SQLITE_JSON:
        values[i] = orjson.dumps(values[i]).decode()
    return values


_PG_CLAIM = (
    "SAVEPOINT claim; "
    "INSERT INTO event_keys (workspace_id, event_id, ts) "
    f"SELECT workspace_id, id, ts FROM {BATCH_TABLE} ORDER BY workspace_id, id; "
    "RELEASE SAVEPOINT claim"
)
"""Claims the batch's keys (in key order, so that two transactions holding the same ids never
deadlock) with a plain insert, which fails on the first key already stored: then the batch
goes back to the savepoint and takes `_PG_DEDUPE`. A plain insert costs a third less than
an insert that checks every key for a conflict, and retried batches are the exception."""
_CLAIM_CONSTRAINT = "event_keys_pkey"
_PG_DEDUPE = (
    "WITH new AS (INSERT INTO event_keys (workspace_id, event_id, ts) "
    f"SELECT workspace_id, id, ts FROM {BATCH_TABLE} ORDER BY workspace_id, id "
    "ON CONFLICT DO NOTHING RETURNING workspace_id, event_id) "
    f"DELETE FROM {BATCH_TABLE} AS b WHERE NOT EXISTS (SELECT 1 FROM new "
    "WHERE new.workspace_id = b.workspace_id AND new.event_id = b.id) "
    "RETURNING b.workspace_id, b.id"
)
"""Claims the keys not stored yet and removes the others' events from the batch; returns
those (the duplicates)."""
PAYLOAD_BATCH_TABLE = "_batch_payloads"
_PG_PAYLOADS = (
    f"INSERT INTO payloads ({', '.join(PAYLOAD_COLUMNS)}) "
    f"SELECT {', '.join('p.' + c for c in PAYLOAD_COLUMNS)} FROM {PAYLOAD_BATCH_TABLE} AS p "
    f"WHERE EXISTS (SELECT 1 FROM {BATCH_TABLE} AS b "
    "WHERE b.workspace_id = p.workspace_id AND b.id = p.event_id)"
)


def _payload_record(event: ValidEvent) -> tuple[Any, ...]:
    record = event.record
    return (
        record[WORKSPACE],
        record[ID],
        record[TS],
        _json_or_none(event.request),
        _json_or_none(event.response),
    )


class PostgresBatches:
    """Batches on dedicated asyncpg connections (one per writer lane), reopened when broken.

    A batch is three round trips (four when its events name users: their departments are read
    first, before BEGIN): BEGIN, COPY of its events (and payloads) into temporary
    tables, then the claim of its keys and every other statement and COMMIT in one
    multi-statement query (when a key was stored already, one more: the claim that returns the
    duplicates). Python prepares everything before BEGIN, so the rows that the aggregating
    upserts lock (sessions, day versions) stay locked only while the database works on them,
    never while this process's event loop is busy with other requests; concurrent lanes then
    rarely wait for each other.
    """

    dialect = Dialect.POSTGRESQL

    def __init__(self, db: Database, lanes: int) -> None:
        self._dsn = db.asyncpg_dsn
        self.lanes = max(1, lanes)
        self._idle: list[asyncpg.Connection] = []
        self._slots: dict[asyncpg.Connection, int] = {}
        """Each connection's data version slot: lanes never wait on each other's rows."""
        self._first_slot = writer_slot()  # then the next ones: distinct within the process
        self._partitions = PartitionManager()
        self._partition_lock = asyncio.Lock()

    async def _acquire(self) -> asyncpg.Connection:
        while self._idle:
            conn = self._idle.pop()
            if not conn.is_closed():
                return conn
            self._slots.pop(conn, None)
        conn = await asyncpg.connect(self._dsn)
        # batches aggregate tens of thousands of rows: sort and hash in memory
        await conn.execute("SET work_mem = '64MB'")
        await conn.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {BATCH_TABLE} "
            "(LIKE events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS; "
            f"CREATE TEMP TABLE IF NOT EXISTS {PAYLOAD_BATCH_TABLE} "
            "(LIKE payloads) ON COMMIT DELETE ROWS"
        )
        taken = set(self._slots.values())
        slots = ((self._first_slot - 1 + i) % WRITER_SLOTS + 1 for i in range(WRITER_SLOTS))
        self._slots[conn] = next((s for s in slots if s not in taken), self._first_slot)
        return conn

    def _release(self, conn: asyncpg.Connection) -> None:
        if not conn.is_closed():
            self._idle.append(conn)
        else:
            self._slots.pop(conn, None)

    async def _ensure_partitions(self, events: Sequence[ValidEvent]) -> None:
        await self.ensure_days({e.record[TS].date() for e in events})

    async def ensure_days(self, days: set[date]) -> None:
        """Create the day partitions that are missing (a bulk load asks for all of its days
        first: creating a partition locks the parent table, which waits for every batch in
        flight and holds the next ones back)."""
        if self._partitions.knows(days):
            return
        async with self._partition_lock:
            conn = await self._acquire()
            try:
                await self._partitions.ensure(conn, days)
            finally:
                self._release(conn)

    async def write(
        self, events: Sequence[ValidEvent], steps: Sequence[WriterStep]
    ) -> list[ValidEvent]:
        if not events:
            return []
        statements: list[str] = []
        for step in steps:
            if isinstance(step, OnlyIf):
                if step.wanted(events):
                    statements.append(step.sql)
            elif isinstance(step, str):
                statements.append(step)
            else:
                raise NotImplementedError("the PostgreSQL writer only runs SQL steps")
        payloads = [_payload_record(e) for e in events if e.has_payload]
        finish = [
            f"INSERT INTO events ({_COLUMN_LIST}) SELECT {_COLUMN_LIST} FROM {BATCH_TABLE}",
            *([_PG_PAYLOADS] if payloads else []),
            *statements,
        ]
        await self._ensure_partitions(events)
        conn = await self._acquire()
        # the data version moves in the same transaction as the events (storage/data_versions)
        finish = [*finish, batch_bump_sql(BATCH_TABLE, self._slots[conn]), "COMMIT"]
        try:
            users = _users_of(events)
            if users:  # read before BEGIN: a plain read, nothing to hold locked meanwhile
                pairs = [(w, u) for w, ids in users.items() for u in ids]
                rows = await conn.fetch(_PG_DEPARTMENTS, *zip(*pairs, strict=True))
                _set_departments(events, {(r[0], r[1]): r[2] for r in rows})
            records = [_postgres_record(e.record) for e in events]
            await conn.execute("BEGIN")
            try:
                await conn.copy_records_to_table(
                    BATCH_TABLE, records=records, columns=EVENT_COLUMNS
                )
                if payloads:
                    await conn.copy_records_to_table(
                        PAYLOAD_BATCH_TABLE, records=payloads, columns=PAYLOAD_COLUMNS
                    )
                duplicates: set[tuple[int, str]] = set()
                try:
                    await conn.execute(";\n".join((_PG_CLAIM, *finish)))
                except asyncpg.UniqueViolationError as exc:
                    if exc.constraint_name != _CLAIM_CONSTRAINT:
                        raise
                    await conn.execute("ROLLBACK TO SAVEPOINT claim")
                    duplicates = {(r[0], r[1]) for r in await conn.fetch(_PG_DEDUPE)}
                    await conn.execute(";\n".join(finish))
            except BaseException:
                await _rollback(conn)
                raise
        finally:
            self._release(conn)
        if not duplicates:
            return list(events)
        return [e for e in events if e.key not in duplicates]

    @property
    def partitions(self) -> PartitionManager:
        return self._partitions

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            if not conn.is_closed():
                await conn.close()


async def _rollback(conn: asyncpg.Connection) -> None:
    """End a failed batch's transaction; a connection that cannot is closed (and reopened by
    the next batch)."""
    if conn.is_closed():
        return
    try:
        await conn.execute("ROLLBACK")
    except BaseException:
        conn.terminate()


class _SqliteTx:
    def __init__(self, conn: Any) -> None:
        self.conn = conn  # aiosqlite.Connection
        self.runner = SqliteRunner(conn)

    async def insert_new_events(self, events: Sequence[ValidEvent]) -> list[ValidEvent]:
        """Insert the events whose (workspace_id, id) is new and stage them in BATCH_TABLE;
        returns those, in order."""
        existing: set[tuple[int, str]] = set()
        by_workspace: dict[int, list[str]] = {}
        for e in events:
            by_workspace.setdefault(e.record[WORKSPACE], []).append(e.record[ID])
        for workspace_id, ids in by_workspace.items():
            for i in range(0, len(ids), _SQLITE_CHUNK):
                chunk = ids[i : i + _SQLITE_CHUNK]
                marks = ",".join("?" * len(chunk))
                cursor = await self.conn.execute(
                    f"SELECT id FROM events WHERE workspace_id = ? AND id IN ({marks})",
                    (workspace_id, *chunk),
                )
                existing.update((workspace_id, r[0]) for r in await cursor.fetchall())
        new = [e for e in events if e.key not in existing]
        if not new:
            return []
        _set_departments(new, await self._departments(_users_of(new)))
        marks = ",".join("?" * len(EVENT_COLUMNS))
        await self.conn.executemany(
            f"INSERT INTO temp.{BATCH_TABLE} ({_COLUMN_LIST}) VALUES ({marks})",
            [_sqlite_record(e.record) for e in new],
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
                        e.record[WORKSPACE],
                        e.record[ID],
                        sqlite_value(e.record[TS]),
                        _json_or_none(e.request),
                        _json_or_none(e.response),
                    )
                    for e in with_payload
                ],
            )
        return new

    async def _departments(self, users: dict[int, set[str]]) -> dict[tuple[int, str], str]:
        """The departments of these users, by (workspace, user); users without one left out."""
        found: dict[tuple[int, str], str] = {}
        for workspace_id, ids in users.items():
            ordered = sorted(ids)
            for i in range(0, len(ordered), _SQLITE_CHUNK):
                chunk = ordered[i : i + _SQLITE_CHUNK]
                cursor = await self.conn.execute(
                    "SELECT id, department FROM users WHERE workspace_id = ? "
                    f"AND id IN ({','.join('?' * len(chunk))}) AND department IS NOT NULL",
                    (workspace_id, *chunk),
                )
                found.update(((workspace_id, r[0]), r[1]) for r in await cursor.fetchall())
        return found


class SqliteBatches:
    """Batches on the single SQLite writer connection (shared with administrative writes)."""

    dialect = Dialect.SQLITE
    lanes = 1

    def __init__(self, db: Database) -> None:
        self._db = db

    async def ensure_days(self, days: set[date]) -> None:
        return None

    async def write(
        self, events: Sequence[ValidEvent], steps: Sequence[WriterStep]
    ) -> list[ValidEvent]:
        if not events:
            return []
        async with self._db.writer.connect() as sa_conn:
            raw = await sa_conn.get_raw_connection()
            conn = raw.driver_connection
            assert conn is not None  # an open connection has its driver's
            await conn.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {BATCH_TABLE} AS "
                "SELECT * FROM main.events WHERE 0"
            )
            await conn.execute("BEGIN IMMEDIATE")
            try:
                await conn.execute(f"DELETE FROM temp.{BATCH_TABLE}")
                tx = _SqliteTx(conn)
                new = await tx.insert_new_events(events)
                if new:
                    for step in steps:
                        if isinstance(step, OnlyIf):
                            if step.wanted(new):
                                await conn.execute(step.sql)
                        elif isinstance(step, str):
                            await conn.execute(step)
                        else:
                            await step(tx.runner, {})
                    await conn.execute(batch_bump_sql(f"temp.{BATCH_TABLE}", MAINTENANCE_SLOT))
                await conn.execute(f"DELETE FROM temp.{BATCH_TABLE}")
            except BaseException:
                await conn.rollback()
                raise
            await conn.commit()
        return new

    async def close(self) -> None:
        return None


def batches_for(db: Database, lanes: int) -> Batches:
    """The writer's database side; `lanes` transactions at once on PostgreSQL (SQLite: one;
    the server passes `Settings.writer_connections`, 3 by default)."""
    match db.dialect:
        case Dialect.POSTGRESQL:
            return PostgresBatches(db, lanes)
        case Dialect.SQLITE:
            return SqliteBatches(db)
        case _:
            assert_never(db.dialect)
