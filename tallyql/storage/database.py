"""Connections: a read pool and a writer, on SQLite (embedded) or PostgreSQL.

SQLite runs in WAL mode with exactly one writer connection (the `writer` engine has a pool of
one, shared by the event writer and every small administrative write) and a pool of readers.
PostgreSQL has a pool of autocommit readers and a pool for transactions (`write`).
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, assert_never

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.util import await_only

from tallyql.config import normalize_database_url
from tallyql.storage.dialect import Dialect
from tallyql.storage.read_limits import (
    DEADLINE,
    DeadlineExceeded,
    StatementTimeout,
    TenantShares,
    is_statement_timeout,
)
from tallyql.storage.standbys import READ_ROUTE, ReadRoute, StandbyRouter, routed


def _sqlite_pragmas(synchronous: str, cache_mib: int, temp_store: str) -> Any:
    """WAL, durability level, a per-connection page cache and where temporary tables and
    sorts live. No mmap: every connection's mapping would count the same file pages again in
    the process's RSS; the OS page cache serves reads as well."""

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute(f"PRAGMA temp_store={temp_store}")
        cursor.execute(f"PRAGMA cache_size=-{cache_mib * 1024}")
        cursor.close()

    return on_connect


POSTGRES_SETTINGS = {"parallel_setup_cost": "20000", "random_page_cost": "1.1"}
"""Session settings of every pooled PostgreSQL connection.
- parallel_setup_cost: a dashboard field runs several small statements at once (rollup rows,
  raw edges of a few thousand events); with the default (1000) the planner gave many of them
  parallel workers, whose start-up cost more CPU than the scans (bench/query.py on 10M events:
  overview 154 ms of PostgreSQL CPU per request, 67 ms without). Scans of millions of rows
  still get their workers.
- random_page_cost: the usual value for SSDs and cached data (the default, 4, is for spinning
  disks); with it the planner reads a window's sessions from their covering index instead of
  scanning the table."""

POSTGRES_READ_SETTINGS = {"jit": "off"}
"""Session settings of the read connections besides POSTGRES_SETTINGS.
- jit: a question's plan over a month of day partitions or rollup rows is estimated above
  `jit_above_cost` (100,000) however few rows it reads, and compiling it cost more than running
  it: the request log's first page filtered by a rare gateway and status code (a LATERAL scan
  of 28 hour ranges, 563 functions compiled) spent 400-650 ms of its 500-700 ms in JIT on 10M
  demo events (bench/query.py --mix, log_gateway_code). The exact statistics' scans had
  already turned it off (engine/query/exact_stats.py). The forced raw path's scans of millions
  of events may lose a little by it (not measured)."""

PROGRESS_STEPS = 10_000
"""SQLite virtual machine steps between two looks at a statement's clock (well under a
millisecond of work each)."""


def _sqlite_statement_clock(engine: Any, timeout: float) -> None:
    """SQLite has no statement timeout: each reader gets a progress handler that interrupts
    the running statement once its limit has passed. The limit (the statement timeout, or
    the request's deadline when sooner) is set when the statement starts, in a cell shared
    through the connection record; aiosqlite runs the statement (rows included) inside
    execute, so the cell is cleared when execute returns."""

    def on_connect(dbapi_connection: Any, record: Any) -> None:
        cell: list[float | None] = [None]
        record.info["statement_limit"] = cell

        def progress() -> int:
            limit = cell[0]
            return 1 if limit is not None and time.monotonic() > limit else 0

        raw = dbapi_connection._connection  # the aiosqlite connection
        await_only(raw.set_progress_handler(progress, PROGRESS_STEPS))

    def before(conn: Any, _cursor: Any, *_args: Any) -> None:
        cell = conn.info.get("statement_limit")
        if cell is not None:
            limit = time.monotonic() + timeout if timeout > 0 else math.inf
            deadline = DEADLINE.get()
            limit = min(limit, deadline) if deadline is not None else limit
            cell[0] = None if limit == math.inf else limit

    def after(conn: Any, _cursor: Any, *_args: Any) -> None:
        cell = conn.info.get("statement_limit")
        if cell is not None:
            cell[0] = None

    event.listen(engine, "connect", on_connect)
    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)


class Database:
    """The database tallyql runs on, with its dialect and engines.

    `statement_timeout` (seconds, 0: none) bounds every statement of the read connections;
    `workspace_share` of the read connections is the most one workspace's requests hold at
    once (storage/read_limits.py). `read_urls` are PostgreSQL hot standbys that answer the
    reads of routed requests (storage/standbys.py); `read_wait_ms` bounds a request's wait
    for a standby to replay what it must show, `read_max_lag_seconds` the lag of a standby
    still used."""

    def __init__(
        self,
        url: str,
        pool_size: int = 10,
        statement_timeout: float = 0.0,
        workspace_share: float = 1.0,
        read_urls: Sequence[str] = (),
        read_wait_ms: float = 0.0,
        read_max_lag_seconds: float = 10.0,
    ) -> None:
        self.url = normalize_database_url(url)
        parsed = make_url(self.url)
        self.dialect = Dialect.of(self.url)
        self.statement_timeout = statement_timeout
        self.standbys: StandbyRouter | None = None
        """The hot standbys (PostgreSQL with read URLs only)."""
        match self.dialect:
            case Dialect.POSTGRESQL:
                readers = pool_size
                options: dict[str, Any] = {
                    "pool_pre_ping": True,
                    "connect_args": {"server_settings": POSTGRES_SETTINGS},
                }
                read_settings = {**POSTGRES_SETTINGS, **POSTGRES_READ_SETTINGS}
                if statement_timeout > 0:
                    read_settings["statement_timeout"] = str(
                        max(1, round(statement_timeout * 1000))
                    )
                # reads run in autocommit: no BEGIN and ROLLBACK round trips around each of a
                # field's statements (each statement reads one snapshot either way; readers that
                # need one snapshot for several ask for REPEATABLE READ on their connection)
                self.reader = create_async_engine(
                    self.url,
                    pool_size=pool_size,
                    max_overflow=pool_size,
                    isolation_level="AUTOCOMMIT",
                    **{**options, "connect_args": {"server_settings": read_settings}},
                )
                self.writer = create_async_engine(self.url, pool_size=5, max_overflow=10, **options)
                if read_urls:
                    self.standbys = StandbyRouter(
                        self.reader,
                        [normalize_database_url(u) for u in read_urls],
                        read_settings,
                        read_wait_ms,
                        read_max_lag_seconds,
                    )
            case Dialect.SQLITE:
                if read_urls:
                    raise ValueError("TALLYQL_DATABASE_READ_URLS needs a PostgreSQL primary")
                # more readers than cores gains nothing with SQLite (at most 4); each holds
                # its own cache
                readers = min(pool_size, 4)
                path = parsed.database
                if path and path != ":memory:":
                    Path(path).parent.mkdir(parents=True, exist_ok=True)
                self.reader = create_async_engine(self.url, pool_size=readers, max_overflow=0)
                # the writer's batch runs about 170 distinct statements (a fold's statements per
                # rollup table, the histogram step's per table): with sqlite3's default cache of
                # 128 prepared statements each batch compiled most of them again
                self.writer = create_async_engine(
                    self.url,
                    pool_size=1,
                    max_overflow=0,
                    connect_args={"cached_statements": 1024},
                )
                # readers sort and group in temporary files (the OS caches them): a scan of raw
                # events would otherwise hold its whole sort in the process's memory
                readers_pragmas = _sqlite_pragmas("NORMAL", 32, "FILE")
                event.listen(self.reader.sync_engine, "connect", readers_pragmas)
                _sqlite_statement_clock(self.reader.sync_engine, statement_timeout)
                event.listen(
                    self.writer.sync_engine, "connect", _sqlite_pragmas("FULL", 64, "MEMORY")
                )
            case _:
                assert_never(self.dialect)
        self.shares = TenantShares(math.floor(readers * workspace_share))

    @property
    def asyncpg_dsn(self) -> str:
        return self.url.replace("postgresql+asyncpg://", "postgresql://", 1)

    @contextmanager
    def standby_reads(self) -> Iterator[ReadRoute | None]:
        """Within this block, reads go to a standby that has replayed every commit made
        before it (or to the primary); without read URLs it changes nothing."""
        with routed(self.standbys) as route:
            yield route

    @asynccontextmanager
    async def _connect(self) -> AsyncIterator[AsyncConnection]:
        """A read connection to the database the current request reads from."""
        route = READ_ROUTE.get() if self.standbys is not None else None
        standby = await route.standby() if route is not None else None
        engine: AsyncEngine = self.reader
        if standby is not None and route is not None:
            try:
                conn = await standby.engine.connect()
            except (OSError, TimeoutError, DBAPIError) as exc:
                route.failed(standby, exc)  # this read and the request's next ones: primary
            else:
                try:
                    yield conn
                finally:
                    await conn.close()
                return
        async with engine.connect() as conn:
            yield conn

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read connection, within the request's workspace share and deadline."""
        async with self.shares.hold(), self._connect() as conn:
            try:
                yield conn
            except DBAPIError as exc:
                if is_statement_timeout(exc):
                    raise _timed_out() from exc
                raise

    @asynccontextmanager
    async def read_snapshot(self) -> AsyncIterator[AsyncConnection]:
        """A read connection inside one transaction: every statement sees one snapshot
        (REPEATABLE READ on PostgreSQL, where it also allows server-side cursors)."""
        async with self.shares.hold(), self._connect() as conn:
            if (level := self.dialect.snapshot_isolation) is not None:
                conn = await conn.execution_options(isolation_level=level)
            try:
                async with conn.begin():
                    yield conn
            except DBAPIError as exc:
                if is_statement_timeout(exc):
                    raise _timed_out() from exc
                raise

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A transaction on the writer; commits on success, rolls back on error."""
        async with self.writer.begin() as conn:
            yield conn

    async def ping(self) -> bool:
        try:
            async with self.read() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception:
            return False
        return True

    async def dispose(self) -> None:
        if self.standbys is not None:
            await self.standbys.dispose()
        await self.reader.dispose()
        if self.writer is not self.reader:
            await self.writer.dispose()


def _timed_out() -> Exception:
    """A statement the database cancelled for its time, as the error that says why."""
    deadline = DEADLINE.get()
    if deadline is not None and time.monotonic() >= deadline:
        return DeadlineExceeded("the request ran past its deadline; ask for less at once")
    return StatementTimeout(
        "a statement ran past the database statement timeout and was cancelled; "
        "ask for a shorter window, a coarser granularity or fewer groups"
    )
