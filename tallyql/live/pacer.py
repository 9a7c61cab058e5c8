"""Keeps live deliveries to a share of the event loop, so that ingest and queries keep theirs.

Every subscription renders and sends its items on the event loop that also serves ingest and
queries. With many busy subscribers, each loop iteration would run a send for every one of
them, and an ingest call, which needs a dozen iterations, would crawl. The pacer times each
delivery (from the stream handing out an item until it is asked for the next one) and keeps a
virtual clock of the time deliveries have used, divided by their `share`. While that clock
runs ahead of the wall clock by more than `burst`, further deliveries wait for their turn,
first come first served; the subscribers that cannot keep up at that pace fill their bounded
queues and receive Lagged notices, like any slow subscriber. A delivery that takes long (a
client whose socket is full) is charged at most `max_cost`: its wait is spent suspended, not
on the loop.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable


class DeliveryPacer:
    WAKE_AT_ONCE = 16
    TICK = 0.0005  # seconds between wake-ups while deliveries wait

    def __init__(
        self,
        share: float = 0.5,
        burst: float = 0.005,
        max_cost: float = 0.001,
        pressed_share: float | None = None,
        pressure: Callable[[], bool] | None = None,
        pressed_split: Callable[[], int] | None = None,
    ) -> None:
        """`pressure`: whether something that matters more (ingest) is short of time now;
        while it is, deliveries are charged against `pressed_share` instead of `share`,
        divided by `pressed_split()` (how many processes share it) when given."""
        if not 0.0 < share <= 1.0:
            raise ValueError("the delivery share must be in (0, 1]")
        if pressed_share is not None and not 0.0 < pressed_share <= share:
            raise ValueError("the pressed share must be in (0, share]")
        self.share = share
        self.pressed_share = pressed_share if pressed_share is not None else share
        self.pressure = pressure
        self.pressed_split = pressed_split
        self.charges = 0
        self.pressed_charges = 0
        """Deliveries charged, and charged at the pressed share (for /health and tests)."""
        self.burst = burst
        self.max_cost = max_cost
        self.waits = 0
        """Deliveries that had to wait for their turn (for /health and tests)."""
        self._due = 0.0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def pressed(self) -> bool:
        """Whether deliveries are charged against the pressed share now."""
        return self.pressure is not None and self.pressure()

    def _ahead(self) -> float:
        return self._due - time.perf_counter()

    def ahead(self) -> float:
        """Seconds by which deliveries' charged time runs ahead of the wall clock."""
        return self._ahead()

    async def turn(self) -> None:
        """Return when a delivery may start."""
        if not self._waiters and self._ahead() <= self.burst:
            return
        self.waits += 1
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        if self._timer is None:
            self._pump()
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            raise

    def done(self, started: float) -> None:
        """Charge a delivery that started at `started` (time.perf_counter())."""
        self.charge(started, min(time.perf_counter() - started, self.max_cost))

    def charge(self, started: float, cost: float) -> None:
        """Charge `cost` seconds of the loop's time, spent from `started` (perf_counter)."""
        share = self.share
        self.charges += 1
        if self.pressed():
            share = self.pressed_share
            if self.pressed_split is not None:
                share /= max(1, self.pressed_split())
            self.pressed_charges += 1
        self._due = max(self._due, started) + cost / share

    def _pump(self) -> None:
        """Wake the next waiters if the budget allows; come back while any are waiting."""
        self._timer = None
        if self._ahead() <= self.burst:
            woken = 0
            while self._waiters and woken < self.WAKE_AT_ONCE:
                waiter = self._waiters.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    woken += 1
        if self._waiters:
            delay = max(self._ahead() - self.burst, self.TICK)
            self._timer = asyncio.get_running_loop().call_later(delay, self._pump)
