"""One live subscription's mailbox: a bounded queue of items, a lag count, running totals.

The bus offers items without ever waiting: when the queue is full the item is dropped and
counted, and the consumer receives a `lagged` item with the count, in the place where the
items went missing. Totals count every matching event, dropped or not.

A batch of events arrives as a `FilterView` shared by every subscriber of the same filter:
its items go into the queue as one run (a shared list and a position), and its totals are
added whole, so that offering a batch costs the same whatever its size.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tallyql.clock import clock
from tallyql.live.compact import LiveRow
from tallyql.live.fanout import ERROR, REQUEST, FilterKey, FilterView
from tallyql.live.matcher import Matcher
from tallyql.live.totals import Totals

COST_UPDATE = "cost_update"
LIMIT_WARNING = "limit_warning"
AUDIT = "audit"
ALERT = "alert"
LAGGED = "lagged"
ALL_TYPES = frozenset({REQUEST, ERROR, COST_UPDATE, LIMIT_WARNING, AUDIT, ALERT})

Item = tuple[str, Any]  # (kind, live row | notice dict | lag count)


class _Run:
    """Items of one batch waiting in a queue: `items[position:]`."""

    __slots__ = ("items", "position")

    def __init__(self, items: Sequence[Item]) -> None:
        self.items = items
        self.position = 0


@dataclass
class TodayCount:
    """Streamed events that count towards today on top of a base read from the engine: those
    with a timestamp in [start, end), streamed from just before the base was read. Those
    committed until `check_until` (epoch seconds, as stamped by the committing process) may
    be in the base too: they wait in `unchecked` until live/today.py tells which ones the
    base counted, and those are taken off again."""

    start_us: int
    end_us: int
    check_until: float = math.inf
    totals: Totals = field(default_factory=Totals)
    unchecked: list[LiveRow] = field(default_factory=list)


def _committed_at(item: Item) -> float:
    kind, value = item
    return value.committed_at if kind in (REQUEST, ERROR) else math.inf


class Subscriber:
    def __init__(
        self,
        workspace_id: int,
        matcher: Matcher,
        types: frozenset[str],
        max_queue: int,
        count_totals: bool = False,
        filter_key: FilterKey | None = None,
        max_age: float = math.inf,
    ) -> None:
        self.workspace_id = workspace_id
        self.matcher = matcher
        self.filter_key: FilterKey = filter_key if filter_key is not None else object()
        """Subscribers with equal keys have equal matchers and share each batch's view."""
        self.types = types
        self.max_queue = max_queue
        self.max_age = max_age
        """Seconds after its commit that an event may still be sent; older ones are dropped
        and counted (a subscriber far behind hears of it soon, not after its whole queue)."""
        self.count_totals = count_totals
        self.since_start = Totals()
        self.today: TodayCount | None = None
        self.dropped_total = 0
        self.delivered_total = 0
        self._queue: deque[Item | _Run] = deque()
        self._size = 0
        self._wake = asyncio.Event()
        self._wants_request = REQUEST in types
        self._wants_error = ERROR in types

    @property
    def queued(self) -> int:
        return self._size

    def offer_events(self, rows: Sequence[LiveRow]) -> None:
        """Offer a batch of rows (the bus shares one view among a filter's subscribers)."""
        self.offer(FilterView(self.matcher, rows))

    def offer(self, view: FilterView) -> None:
        if not view.rows:
            return
        if self.count_totals:
            self._count(view)
        if self._wants_request or self._wants_error:
            items = view.items(self._wants_request, self._wants_error)
            if items:
                self._put_run(items)
                self._wake.set()

    def offer_notice(self, kind: str, notice: dict[str, Any]) -> None:
        if kind in self.types:
            self._put_run(((kind, notice),))
            self._wake.set()

    def _count(self, view: FilterView) -> None:
        self.since_start.absorb(view.totals)
        today = self.today
        if today is None:
            return
        totals, rows = view.window(today.start_us, today.end_us)
        if not rows:
            return
        today.totals.absorb(totals)
        check_until = today.check_until
        today.unchecked.extend(row for row in rows if row.committed_at <= check_until)

    def _put_run(self, items: Sequence[Item]) -> None:
        room = self.max_queue - self._size
        if room >= len(items):
            self._queue.append(_Run(items))
            self._size += len(items)
            return
        if room > 0:
            self._queue.append(_Run(items[:room]))
            self._size += room
        dropped = len(items) - max(room, 0)
        self.dropped_total += dropped
        tail = self._queue[-1] if self._queue else None
        if isinstance(tail, tuple) and tail[0] == LAGGED:
            tail[1][0] += dropped
        else:
            self._queue.append((LAGGED, [dropped]))

    def take(self) -> Item | None:
        """The next item, or None when the queue is empty."""
        if not self._queue:
            self._wake.clear()
            return None
        if self.max_age != math.inf and (stale := self._drop_stale()):
            return (LAGGED, stale)
        head = self._queue[0]
        if isinstance(head, tuple):  # a lag notice
            self._queue.popleft()
            return (LAGGED, head[1][0])
        item = head.items[head.position]
        head.position += 1
        if head.position == len(head.items):
            self._queue.popleft()
        self._size -= 1
        self.delivered_total += 1
        return item

    def _drop_stale(self) -> int:
        """Drop the events at the head committed more than max_age ago, with the lag notices
        among them; the count of events missing there."""
        cutoff = clock.timestamp() - self.max_age
        missing = 0
        while self._queue:
            head = self._queue[0]
            if isinstance(head, tuple):
                if not missing:
                    break  # a notice of its own; anything stale behind it comes next
                missing += head[1][0]
                self._queue.popleft()
                continue
            items, start = head.items, head.position
            end = start
            while end < len(items) and _committed_at(items[end]) < cutoff:
                end += 1
            dropped = end - start
            missing += dropped
            self._size -= dropped
            self.dropped_total += dropped
            if end < len(items):
                head.position = end
                break
            self._queue.popleft()
        return missing

    async def wait(self, seconds: float | None) -> None:
        """Until an item arrives (or the timeout passes)."""
        if self._queue:
            return
        self._wake.clear()
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            pass
