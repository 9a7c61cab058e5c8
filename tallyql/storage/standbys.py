"""Reads from PostgreSQL hot standbys (TALLYQL_DATABASE_READ_URLS), never staler than the request.

What reads where: a request that installs a `ReadRoute` (GraphQL queries, exports, charts, ask,
statements, report files, report rendering) sends its reads to a standby; everything else
(writes, migrations, background jobs, LISTEN/NOTIFY, GraphQL mutations and subscriptions) uses
the primary, as without standbys.

Freshness. An answer must hold every commit acknowledged before the request started. The
position the request needs is the primary's `pg_current_wal_lsn()` read once, when the request
first reads: it is at or past the end of the commit record of every transaction that has
returned from COMMIT, whichever `tallyql serve` process (or tool) made it, and whatever it wrote
(events, but also keys, budgets, price overrides...). A standby whose `pg_last_wal_replay_lsn()`
has reached it shows all of them (PostgreSQL replays WAL in order and makes a transaction
visible on the standby when its commit record is replayed). Why not only the writer's own
commit positions per workspace: a process knows only its own commits, not those of the other
replicas behind the load balancer nor of mutations and tools, so it would send a read to a
standby that misses an event another process acknowledged a millisecond earlier; a shared
table of per-workspace positions would cost a write (and a WAL flush) after every batch and
one read of the primary per request all the same. One `SELECT pg_current_wal_lsn()` is the
cheapest correct source (a round trip that reads no table), and is only asked when some
standby is healthy. Its cost is that a workspace with no new events may wait for
another workspace's commits to be replayed; streaming replay keeps that within milliseconds.

Choice. A standby whose last known replay position (the monitor's, or a request's) already
reaches the target answers at once; otherwise the request waits for the most advanced healthy
standby's replay to reach it, polling it every few milliseconds (one poll per standby shared by
every waiting request), at most TALLYQL_READ_WAIT_MS; then the primary answers. A request keeps
the database it got for all its reads (a standby only moves forward, so later reads never see
less than earlier ones).

Health. A monitor asks every standby four times a second, with one second to answer, whether it
is in recovery, its replay position and, when it is behind the primary, how old its last
replayed transaction is (its lag; 0 when it has replayed everything the primary wrote). A
standby that does not answer, refuses connections, is not in recovery, or lags beyond
TALLYQL_READ_MAX_LAG_SECONDS is skipped until a later check finds it well again; a connection
that fails while a request opens it marks the standby down at once and that read goes to the
primary. Long queries on a standby can be cancelled by recovery conflicts: operators set
`hot_standby_feedback = on` or a larger `max_standby_streaming_delay` on the standbys (README).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tallyql.storage.jobs import PeriodicJob

log = logging.getLogger(__name__)

CHECK_SECONDS = 0.25
"""How often the monitor asks each standby how it is."""
CHECK_TIMEOUT_SECONDS = 1.0
"""How long a standby has to connect and answer a check (or a request's connection)."""
WAIT_POLL_SECONDS = 0.002
"""Between two looks at a standby's replay position while requests wait for it."""

STREAMING = "streaming"
"""Healthy: in recovery, its lag within the bound."""
LAGGING = "lagging"
DOWN = "down"
NOT_STANDBY = "not_in_recovery"
UNKNOWN = "unknown"
STATES = (STREAMING, LAGGING, DOWN, NOT_STANDBY, UNKNOWN)

_CHECK_SQL = text(
    "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn() - '0/0'::pg_lsn,"
    " extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())"
)
_REPLAY_SQL = text("SELECT pg_last_wal_replay_lsn() - '0/0'::pg_lsn")
_PRIMARY_SQL = text("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")


def format_lsn(value: int | None) -> str | None:
    """PostgreSQL's notation of a WAL position (X/Y, hexadecimal)."""
    if value is None:
        return None
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def display_name(url: str) -> str:
    """host:port/database of a URL, never its password."""
    parsed = make_url(url)
    return f"{parsed.host or 'localhost'}:{parsed.port or 5432}/{parsed.database or ''}"


@dataclass
class Standby:
    """One hot standby: its connections, what the last check found, and its share of reads."""

    name: str
    engine: AsyncEngine
    state: str = UNKNOWN
    replay_lsn: int | None = None
    lag_seconds: float | None = None
    error: str | None = None
    checked_at: float | None = None
    """time.time() of the last check."""
    reads: int = 0
    """Requests this standby answered."""
    _waiters: list[tuple[int, asyncio.Future[bool]]] = field(default_factory=list)
    _poller: asyncio.Task[None] | None = None

    @property
    def healthy(self) -> bool:
        return self.state == STREAMING

    def reached(self, lsn: int) -> bool:
        return self.replay_lsn is not None and self.replay_lsn >= lsn

    def advance(self, lsn: int | None) -> None:
        if lsn is not None and (self.replay_lsn is None or lsn > self.replay_lsn):
            self.replay_lsn = lsn

    def mark_down(self, error: BaseException | str) -> None:
        self.state = DOWN
        # what comes back at this address may be another server (rebuilt from an older
        # backup, say): only a check of it says how far it has replayed
        self.replay_lsn = None
        self.error = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        self.checked_at = time.time()
        self._release_waiters()

    def _release_waiters(self) -> None:
        for lsn, waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(self.healthy and self.reached(lsn))
        self._waiters.clear()

    async def wait_for(self, lsn: int, within: float) -> bool:
        """Whether this standby replays up to `lsn` within `within` seconds."""
        if self.reached(lsn):
            return True
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiters.append((lsn, waiter))
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll(), name=f"tallyql-replay-{self.name}")
        try:
            return await asyncio.wait_for(asyncio.shield(waiter), within)
        except TimeoutError:
            return self.reached(lsn)
        finally:
            self._waiters = [(w_lsn, w) for w_lsn, w in self._waiters if w is not waiter]

    async def _poll(self) -> None:
        """Look at the replay position every few milliseconds while anyone waits for it."""
        try:
            async with self.engine.connect() as conn:
                while self._waiters and self.healthy:
                    lsn = (await conn.execute(_REPLAY_SQL)).scalar()
                    self.advance(int(lsn) if lsn is not None else None)
                    remaining = []
                    for w_lsn, waiter in self._waiters:
                        if self.reached(w_lsn):
                            if not waiter.done():
                                waiter.set_result(True)
                        elif not waiter.done():
                            remaining.append((w_lsn, waiter))
                    self._waiters = remaining
                    if self._waiters:
                        await asyncio.sleep(WAIT_POLL_SECONDS)
        except Exception as exc:  # the standby went away while requests waited for it
            self.mark_down(exc)
        finally:
            self._release_waiters()

    def report(self, total_reads: int) -> dict[str, Any]:
        """What /health shows of this standby."""
        return {
            "name": self.name,
            "state": self.state,
            "lag_seconds": None if self.lag_seconds is None else round(self.lag_seconds, 3),
            "replay_lsn": format_lsn(self.replay_lsn),
            "reads": self.reads,
            "share_of_reads": round(self.reads / total_reads, 4) if total_reads else 0.0,
            "error": self.error,
            "checked_at": self.checked_at,
        }


@dataclass
class Answered:
    """Which database answered a request's reads, and why (X-Tallyql-Explain)."""

    database: str
    """`primary`, or the standby's host:port/database."""
    reason: str
    target_lsn: int | None = None
    waited_ms: float = 0.0

    def explain(self) -> dict[str, Any]:
        return {
            "answeredBy": self.database,
            "reason": self.reason,
            "requiredLsn": format_lsn(self.target_lsn),
            "waitedMs": round(self.waited_ms, 3),
        }


PRIMARY = "primary"


class StandbyRouter:
    """The standbys of one process, their monitor, and the choice of one for a request."""

    def __init__(
        self,
        primary: AsyncEngine,
        urls: Sequence[str],
        settings: dict[str, str],
        wait_ms: float,
        max_lag_seconds: float,
    ) -> None:
        self.primary = primary
        self.wait_seconds = max(0.0, wait_ms / 1000)
        self.max_lag_seconds = max_lag_seconds
        self.primary_reads = 0
        """Routed requests the primary answered (no standby fresh or healthy enough)."""
        self.waits: list[float] = []
        """Recent freshness waits, seconds (at most the last 10,000), for benchmarks."""
        self.wait_count = 0
        self.wait_seconds_total = 0.0
        self.standbys = [
            Standby(
                display_name(url),
                create_async_engine(
                    url,
                    pool_size=5,
                    max_overflow=10,
                    pool_pre_ping=True,
                    isolation_level="AUTOCOMMIT",
                    connect_args={"server_settings": settings, "timeout": CHECK_TIMEOUT_SECONDS},
                ),
            )
            for url in urls
        ]
        self.primary_lsn: int | None = None

    @property
    def total_reads(self) -> int:
        return self.primary_reads + sum(s.reads for s in self.standbys)

    # -- health ------------------------------------------------------------------------------

    async def check_all(self) -> None:
        """One round of checks: the primary's position, then every standby at once."""
        try:
            async with self.primary.connect() as conn:
                found = (await conn.execute(_PRIMARY_SQL)).scalar()
                self.primary_lsn = int(found) if found is not None else None
        except Exception:  # the primary's outage is /health's database check, not ours
            log.debug("primary WAL position unavailable", exc_info=True)
        await asyncio.gather(*(self.check(s) for s in self.standbys))

    async def check(self, standby: Standby) -> None:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
                async with standby.engine.connect() as conn:
                    row = (await conn.execute(_CHECK_SQL)).one()
        except Exception as exc:
            if standby.state != DOWN:
                log.warning("standby %s is unavailable: %s", standby.name, exc)
            standby.mark_down(exc)
            await standby.engine.dispose()  # no pooled connection to a server that went away
            return
        in_recovery, lsn, age = row
        standby.checked_at = time.time()
        standby.error = None
        if standby.state in (DOWN, UNKNOWN):
            standby.replay_lsn = None  # back, or first seen: its own word, not an old one
        standby.advance(int(lsn) if lsn is not None else None)
        if not in_recovery:
            standby.state = NOT_STANDBY
            standby.lag_seconds = None
            standby.error = "not in recovery (promoted?): it no longer follows the primary"
            return
        caught_up = self.primary_lsn is not None and standby.reached(self.primary_lsn)
        # the age of the last replayed transaction is the lag only while WAL waits to be
        # replayed: an idle primary makes it grow on a standby that is fully caught up
        if caught_up:
            standby.lag_seconds = 0.0
        else:  # unknown (None) until it replays a transaction after its start
            standby.lag_seconds = None if age is None else max(0.0, float(age))
        if standby.lag_seconds is not None and standby.lag_seconds > self.max_lag_seconds:
            if standby.state != LAGGING:
                log.warning("standby %s lags %.1f s", standby.name, standby.lag_seconds)
            standby.state = LAGGING
        else:
            if standby.state not in (STREAMING, UNKNOWN):
                log.info("standby %s is streaming again", standby.name)
            standby.state = STREAMING

    def report(self) -> dict[str, Any]:
        total = self.total_reads
        return {
            "wait_ms": round(self.wait_seconds * 1000, 3),
            "max_lag_seconds": self.max_lag_seconds,
            "primary_reads": self.primary_reads,
            "primary_share_of_reads": round(self.primary_reads / total, 4) if total else 0.0,
            "standbys": [s.report(total) for s in self.standbys],
        }

    # -- choice ------------------------------------------------------------------------------

    async def choose(self) -> tuple[Standby | None, Answered]:
        """The standby that answers a request starting now, or None for the primary."""
        healthy = [s for s in self.standbys if s.healthy]
        if not healthy:
            self.primary_reads += 1
            return None, Answered(PRIMARY, "no healthy standby")
        async with self.primary.connect() as conn:
            target = int((await conn.execute(_PRIMARY_SQL)).scalar_one())
        fresh = [s for s in healthy if s.reached(target)]
        if fresh:
            chosen = min(fresh, key=lambda s: s.reads)
            chosen.reads += 1
            return chosen, Answered(chosen.name, "replayed the primary's position", target)
        # the most advanced one gets there first
        ahead = max(healthy, key=lambda s: s.replay_lsn or 0)
        started = time.perf_counter()
        ok = self.wait_seconds > 0 and await ahead.wait_for(target, self.wait_seconds)
        waited = time.perf_counter() - started
        self._record_wait(waited)
        if ok and ahead.healthy:
            ahead.reads += 1
            why = "replayed the primary's position"
            return ahead, Answered(ahead.name, why, target, waited * 1000)
        self.primary_reads += 1
        reason = (
            f"no standby had replayed to {format_lsn(target)}"
            f" within {self.wait_seconds * 1000:g} ms"
            f" ({ahead.name} was at {format_lsn(ahead.replay_lsn)})"
        )
        return None, Answered(PRIMARY, reason, target, waited * 1000)

    def _record_wait(self, seconds: float) -> None:
        self.wait_count += 1
        self.wait_seconds_total += seconds
        self.waits.append(seconds)
        if len(self.waits) > 10_000:
            del self.waits[:5_000]

    async def dispose(self) -> None:
        for standby in self.standbys:
            if standby._poller is not None:
                standby._poller.cancel()
            await standby.engine.dispose()


class ReadRoute:
    """One request's reads: the database is chosen at its first read and kept."""

    def __init__(self, router: StandbyRouter) -> None:
        self.router = router
        self._choice: asyncio.Future[Standby | None] | None = None
        self.answered: Answered | None = None

    async def standby(self) -> Standby | None:
        """The standby for this request's reads (None: the primary)."""
        if self._choice is None:
            self._choice = asyncio.get_running_loop().create_future()
            try:
                chosen, self.answered = await self.router.choose()
            except BaseException as exc:
                # the primary's position could not be read: the primary answers (and fails
                # as it would without standbys)
                self.answered = Answered(PRIMARY, f"position unavailable ({type(exc).__name__})")
                self._choice.set_result(None)
                if not isinstance(exc, Exception):
                    raise
                return None
            self._choice.set_result(chosen)
            return chosen
        return await asyncio.shield(self._choice)

    def failed(self, standby: Standby, exc: BaseException) -> None:
        """`standby` failed to connect: it is skipped until a check finds it well, and this
        request's reads go to the primary from now on."""
        standby.mark_down(exc)
        standby.reads -= 1
        self.router.primary_reads += 1
        done: asyncio.Future[Standby | None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        self._choice = done
        self.answered = Answered(PRIMARY, f"{standby.name} failed: {standby.error}")


READ_ROUTE: contextvars.ContextVar[ReadRoute | None] = contextvars.ContextVar(
    "tallyql_read_route", default=None
)
"""The current request's read route; None: reads go to the primary."""


class StandbyChecks(PeriodicJob):
    """The monitor: checks every standby each `CHECK_SECONDS` (their states show under
    /health `read_replicas`)."""

    name = "standby_checks"

    def __init__(self, router: StandbyRouter, reports: dict[str, dict[str, Any]]) -> None:
        super().__init__(CHECK_SECONDS, reports)
        self.router = router

    async def work(self) -> dict[str, Any]:
        await self.router.check_all()
        return {}


@contextmanager
def routed(router: StandbyRouter | None) -> Iterator[ReadRoute | None]:
    """Within this block, reads go to a standby fresh enough for a request starting now."""
    if router is None:
        yield None
        return
    route = ReadRoute(router)
    token = READ_ROUTE.set(route)
    try:
        yield route
    finally:
        READ_ROUTE.reset(token)
