"""The advisory locks that let processes (and replicas) sharing a PostgreSQL database take
turns, and the one way to take them.

SQLite has one writer per database, which already serialises every writer: there, taking a
lock does nothing and always succeeds (`Dialect.advisory_locks`).
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from tallyql.storage.dialect import Dialect

if TYPE_CHECKING:
    from tallyql.storage.database import Database


@enum.unique
class Lock(enum.IntEnum):
    """Advisory lock ids (one number space for the whole database: each lock its own id)."""

    MIGRATE = 0x7A11_7001
    """Held while migrating: replicas starting together migrate once."""
    PARTITIONS = 0x7A11_7002
    """Held while creating day partitions (the writer, before a batch touching a new day)."""
    RETENTION = 0x7A11_7003
    """Held (for the session) by the retention run: one replica purges at a time."""
    COMPACTION = 0x7A11_7004
    """Held by a compaction of the rollup deltas, and by whatever must not interleave with one
    (rebuilds, retention's deletes of staged deltas, a bulk load's week rows)."""
    REPRICE = 0x7A11_7005
    """Held by each batch of a repricing: two repricings of a workspace never interleave."""
    METRIC_WRITES = 0x7A11_7006
    """Taken per workspace (`key`: the workspace id) by OTLP metric writes: two requests never
    insert the same series at once."""


def _sql(key: int | None, wait: bool, session: bool, placeholder: str) -> str:
    function = "pg_advisory" if wait else "pg_try_advisory"
    function += "_lock" if session else "_xact_lock"
    # the two-key form (int4, int4) is a key space of its own: (lock, key) never meets a lock
    # taken with the one-key form
    args = f"{placeholder}1" if key is None else f"{placeholder}1, {placeholder}2"
    return f"SELECT {function}({args})"


def _params(lock: Lock, key: int | None) -> list[int]:
    return [int(lock)] if key is None else [int(lock), key]


async def hold(
    conn: AsyncConnection | asyncpg.Connection,
    lock: Lock,
    key: int | None = None,
    *,
    wait: bool = True,
) -> bool:
    """Take `lock` (with `key`: the lock of that key within it) until the connection's
    transaction ends; with `wait` false, only if no one holds it. Whether it is held now
    (always true where there are no advisory locks). `conn` is an SQLAlchemy connection or,
    on PostgreSQL, a raw asyncpg one (the writer's)."""
    if isinstance(conn, asyncpg.Connection):
        got = await conn.fetchval(_sql(key, wait, False, "$"), *_params(lock, key))
        return wait or bool(got)
    if not Dialect.of(conn).advisory_locks:
        return True
    params = {f"p{i}": v for i, v in enumerate(_params(lock, key), start=1)}
    result = await conn.execute(text(_sql(key, wait, False, ":p")), params)
    return wait or bool(result.scalar_one())


@asynccontextmanager
async def held_for_session(db: Database, lock: Lock) -> AsyncIterator[bool]:
    """Try to take `lock` on a connection of its own, kept for the block: yields whether it is
    held (always true where there are no advisory locks). For work that spans many
    transactions; closing the connection releases the lock."""
    if not db.dialect.advisory_locks:
        yield True
        return
    conn = await asyncpg.connect(db.asyncpg_dsn)
    try:
        yield bool(await conn.fetchval(_sql(None, False, True, "$"), int(lock)))
    finally:
        await conn.close()
