"""The one wall clock that results depend on: "today", time range presets, retention cut-offs,
budget periods, alert windows, the live totals' day and the stamps the background jobs write.

Code that turns the current time into a figure reads `clock.now()` (or `clock.timestamp()`)
instead of `datetime.now`/`time.time`, so a test can set the time the whole server sees to any
moment (just before midnight, the last second of a month, a DST change) and the hour a test
runs at cannot change its outcome. Durations and deadlines inside one process keep using
`time.monotonic`/the event loop's clock: they measure, they do not date.

This module imports nothing of tallyql, so every layer may read it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta


class Clock:
    """The system's UTC time, or a moment a test set that runs on from there (`tick=True`) or
    stands still (`tick=False`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # the server may run in another thread than the test
        self._pinned_at: datetime | None = None  # the moment set ...
        self._pinned_when = 0.0  # ... and the monotonic time at which it was set
        self._tick = True

    def now(self) -> datetime:
        """The current time, timezone-aware in UTC."""
        with self._lock:
            pinned, when, tick = self._pinned_at, self._pinned_when, self._tick
        if pinned is None:
            return datetime.now(UTC)
        if not tick:
            return pinned
        return pinned + timedelta(seconds=time.monotonic() - when)

    def timestamp(self) -> float:
        """The current time in seconds since the Unix epoch (as `time.time()`)."""
        with self._lock:
            pinned = self._pinned_at
        return time.time() if pinned is None else self.now().timestamp()

    def set(self, at: datetime, *, tick: bool = True) -> None:
        """From now on the time is `at` (timezone-aware), running on when `tick`."""
        if at.tzinfo is None:
            raise ValueError("the clock is set to a timezone-aware moment")
        with self._lock:
            self._pinned_at = at.astimezone(UTC)
            self._pinned_when = time.monotonic()
            self._tick = tick

    def reset(self) -> None:
        """Back to the system's time."""
        with self._lock:
            self._pinned_at = None

    @contextmanager
    def pinned(self, at: datetime, *, tick: bool = True) -> Iterator[Clock]:
        """The clock set to `at` inside the block, and what it was before after it."""
        with self._lock:
            saved = (self._pinned_at, self._pinned_when, self._tick)
        self.set(at, tick=tick)
        try:
            yield self
        finally:
            with self._lock:
                self._pinned_at, self._pinned_when, self._tick = saved


clock = Clock()
"""The process's clock: the server, the engine, the live service and the jobs all read it."""
