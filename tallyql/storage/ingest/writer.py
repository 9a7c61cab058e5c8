"""The writer: one task that group-commits every ingest call's events.

Concurrent calls queue their events; the writer takes as many as fit in one batch, writes them
in one transaction (new events, payloads, and every contributor's aggregating statements, such
as sessions and rollups, over the new events only), commits, and only then answers each call.
When the queue is full a call is refused at once (`WriterBusy`), before anything is written.
A failed batch is retried call by call, so one bad call cannot fail its neighbours.
On PostgreSQL up to `lanes` batches are in flight at once (their upserts commute and take
their keys in sorted order, as two replicas' writers would).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from tallyql.clock import clock
from tallyql.storage.dialect import Dialect
from tallyql.storage.ingest.batch import BATCH_TABLE, Batches, WriterStep
from tallyql.storage.ingest.record import ValidEvent
from tallyql.storage.outage import DatabaseUnavailable, is_database_unavailable

log = logging.getLogger(__name__)

Contributor = Callable[[Dialect, str], Sequence[WriterStep]]
"""(dialect, source relation) -> aggregating steps that read the batch's new events."""
CommitListener = Callable[[Sequence[ValidEvent]], None]


class WriterBusy(Exception):
    """The writer's queue is full; the caller should retry after a moment."""

    retry_after_seconds = 1


class WriterStopped(Exception):
    """The writer is not running (shutting down)."""


class WriterFailed(RuntimeError):
    """The call's transaction failed and was rolled back: none of its events were stored."""


SATURATION_SECONDS = 0.5
"""Time constant of the writer's saturation measure (`Writer.saturated`): long enough that
a lull between two ingest calls does not end a burst, short enough that live delivery takes
its full share back within a second of the burst's end."""
SATURATED_SHARE = 0.8
"""Share of recent time spent writing above which the writer counts as saturated: at maximal
ingest a batch is being written nearly all the time (bench/live.py), at a steady 1,000
events/s about a fifth of it."""


class TimeShare:
    """The share of recent time during which a condition held, weighted exponentially (time
    constant `seconds`): each moment counts by exp(-age / seconds)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._value = 0.0
        self._since = time.monotonic()
        self._on = False

    def set(self, on: bool) -> None:
        """The condition holds (or not) from now on."""
        now = time.monotonic()
        self._value = self._at(now)
        self._since = now
        self._on = on

    def _at(self, now: float) -> float:
        decay = math.exp(-(now - self._since) / self.seconds)
        return self._value * decay + (1.0 - decay) * self._on

    @property
    def share(self) -> float:
        return self._at(time.monotonic())


@dataclass
class _Submission:
    events: list[ValidEvent]
    future: asyncio.Future[list[bool]]
    accepted_at: datetime = field(default_factory=clock.now)


@dataclass
class WriterStats:
    batches: int = 0
    events_committed: int = 0
    duplicates: int = 0
    last_batch_size: int = 0
    last_commit_seconds: float = 0.0
    failures: int = 0
    last_commit_at: datetime | None = None
    """When the last batch committed (the server's clock); None before the first."""


class Writer:
    def __init__(
        self,
        batches: Batches,
        contributors: Sequence[Contributor] = (),
        max_queue_events: int = 200_000,
        max_batch_events: int = 20_000,
        observer: Callable[[int, int, float], None] | None = None,
    ) -> None:
        self._batches = batches
        self._contributors = list(contributors)
        self._statements = self._compile()
        self._listeners: list[CommitListener] = []
        self._max_queue = max_queue_events
        self._max_batch = max_batch_events
        self._queue: deque[_Submission] = deque()
        self._queued_events = 0
        self._in_flight: list[list[_Submission]] = []
        """Batches taken from the queue and not yet answered (their lane is writing them)."""
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._observer = observer
        self.stats = WriterStats()
        self._writing = TimeShare(SATURATION_SECONDS)
        """How much of the last moments a batch was being written."""

    @property
    def queue_depth(self) -> int:
        """Events waiting to be written."""
        return self._queued_events

    @property
    def pending_events(self) -> int:
        """Events accepted and not yet answered: queued, or in a batch being written."""
        return self._queued_events + sum(len(s.events) for b in self._in_flight for s in b)

    @property
    def saturated(self) -> bool:
        """Whether the writer was writing most of the last moments (`SATURATION_SECONDS`,
        `SATURATED_SHARE`): ingest is going about as fast as the database lets it. A steady
        load (a gateway's traffic) leaves it idle most of the time."""
        return self._writing.share > SATURATED_SHARE

    def _note_writing(self) -> None:
        self._writing.set(bool(self._in_flight))

    @property
    def oldest_pending_at(self) -> datetime | None:
        """When the longest-waiting accepted, unanswered event was accepted; None: none."""
        firsts = [b[0].accepted_at for b in self._in_flight if b]
        if self._queue:
            firsts.append(self._queue[0].accepted_at)  # the queue is first in, first out
        return min(firsts, default=None)

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def batches(self) -> Batches:
        """The database side of the writer (its PostgreSQL partition manager, for retention)."""
        return self._batches

    def _compile(self) -> list[WriterStep]:
        dialect = self._batches.dialect
        return [sql for c in self._contributors for sql in c(dialect, BATCH_TABLE)]

    def add_listener(self, listener: CommitListener) -> None:
        """Called after each commit with the newly inserted events."""
        self._listeners.append(listener)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="tallyql-writer")

    async def stop(self) -> None:
        """Write what is queued, then stop."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        await self._batches.close()

    async def submit(self, events: list[ValidEvent]) -> list[bool]:
        """Write events; for each, True if it was new and False if a duplicate.

        Returns only after the events are committed."""
        if self._stopping or self._task is None:
            raise WriterStopped("the writer is not running")
        if not events:
            return []
        if self._queued_events + len(events) > self._max_queue and self._queued_events > 0:
            raise WriterBusy(f"writer queue is full ({self._queued_events} events waiting)")
        future: asyncio.Future[list[bool]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Submission(events, future))
        self._queued_events += len(events)
        self._wake.set()
        return await asyncio.shield(future)

    async def _run(self) -> None:
        """Take batches while a lane is free: on PostgreSQL a second transaction runs while
        the first commits, so the database never waits for Python between batches."""
        lanes = max(1, self._batches.lanes)
        running: set[asyncio.Task[None]] = set()

        def done(task: asyncio.Task[None]) -> None:
            running.discard(task)
            self._wake.set()

        while True:
            if self._queue and len(running) < lanes:
                batch = self._take_batch()
                self._in_flight.append(batch)
                self._note_writing()
                task = asyncio.create_task(self._write(batch))
                running.add(task)
                task.add_done_callback(done)
                task.add_done_callback(self._forget_in_flight(batch))
                continue
            if self._stopping and not self._queue and not running:
                return
            self._wake.clear()
            await self._wake.wait()

    def _forget_in_flight(self, batch: list[_Submission]) -> Callable[[object], None]:
        """A done-callback that drops `batch` from the batches being written."""

        def forget(_task: object) -> None:
            self._in_flight.remove(batch)
            self._note_writing()

        return forget

    def _take_batch(self) -> list[_Submission]:
        batch: list[_Submission] = []
        size = 0
        while self._queue:
            nxt = self._queue[0]
            if batch and size + len(nxt.events) > self._max_batch:
                break
            self._queue.popleft()
            batch.append(nxt)
            size += len(nxt.events)
        self._queued_events -= size
        return batch

    async def _write(self, batch: list[_Submission]) -> None:
        try:
            results, new = await self._commit(batch)
        except Exception as exc:
            self.stats.failures += 1
            if is_database_unavailable(exc):
                # the database is down: every call fails alike, and is told to retry (503)
                log.warning("ingest batch failed: the database is unavailable")
                for submission in batch:
                    if not submission.future.done():
                        submission.future.set_exception(
                            DatabaseUnavailable("the database is unavailable; nothing was stored")
                        )
                return
            if len(batch) > 1:
                log.warning("batch of %d calls failed; retrying call by call", len(batch))
                for submission in batch:
                    await self._write([submission])
                return
            log.exception("ingest batch failed")
            error = WriterFailed("the events could not be written; nothing was stored")
            if not batch[0].future.done():
                batch[0].future.set_exception(error)
            return
        for submission, result in zip(batch, results, strict=True):
            if not submission.future.done():
                submission.future.set_result(result)
        for listener in self._listeners:
            try:
                listener(new)
            except Exception:
                log.exception("commit listener failed")

    async def _commit(self, batch: list[_Submission]) -> tuple[list[list[bool]], list[ValidEvent]]:
        started = time.perf_counter()
        unique: list[ValidEvent] = []
        seen: set[tuple[int, str]] = set()
        for submission in batch:
            for event in submission.events:
                key = event.key
                if key not in seen:
                    seen.add(key)
                    unique.append(event)
        new = await self._batches.write(unique, self._statements)
        new_ids = {id(e) for e in new}
        results = [[id(e) in new_ids for e in s.events] for s in batch]
        elapsed = time.perf_counter() - started
        total = sum(len(s.events) for s in batch)
        self.stats.batches += 1
        self.stats.events_committed += len(new)
        self.stats.duplicates += total - len(new)
        self.stats.last_batch_size = total
        self.stats.last_commit_seconds = elapsed
        self.stats.last_commit_at = clock.now()
        if self._observer is not None:
            self._observer(total, len(new), elapsed)
        return results, new
