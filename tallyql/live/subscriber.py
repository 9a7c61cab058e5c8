"""One live subscription's mailbox: a bounded queue of items, a lag count, running totals.

The bus offers items without ever waiting: when the queue is full the item is dropped and
counted, and the consumer receives a `lagged` item with the count, in the place where the
items went missing. Totals count every matching event, dropped or not.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tallyql.live.compact import LiveRow
from tallyql.live.matcher import Matcher
from tallyql.live.totals import Totals

REQUEST = "request"
ERROR = "error"
COST_UPDATE = "cost_update"
LIMIT_WARNING = "limit_warning"
AUDIT = "audit"
ALERT = "alert"
LAGGED = "lagged"
ALL_TYPES = frozenset({REQUEST, ERROR, COST_UPDATE, LIMIT_WARNING, AUDIT, ALERT})

Item = tuple[str, Any]  # (kind, live row | notice dict | lag count)


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


class Subscriber:
    def __init__(
        self,
        workspace_id: int,
        matcher: Matcher,
        types: frozenset[str],
        max_queue: int,
        count_totals: bool = False,
    ) -> None:
        self.workspace_id = workspace_id
        self.matcher = matcher
        self.types = types
        self.max_queue = max_queue
        self.count_totals = count_totals
        self.since_start = Totals()
        self.today: TodayCount | None = None
        self.dropped_total = 0
        self.delivered_total = 0
        self._queue: deque[Item] = deque()
        self._size = 0
        self._wake = asyncio.Event()
        self._wants_request = REQUEST in types
        self._wants_error = ERROR in types

    @property
    def queued(self) -> int:
        return self._size

    def offer_events(self, rows: Sequence[LiveRow]) -> None:
        added = False
        for row in rows:
            if not self.matcher(row):
                continue
            if self.count_totals:
                self._count(row)
            if row["status"] == "error" and self._wants_error:
                added |= self._put((ERROR, row))
            elif self._wants_request:
                added |= self._put((REQUEST, row))
        if added:
            self._wake.set()

    def offer_notice(self, kind: str, notice: dict[str, Any]) -> None:
        if kind in self.types and self._put((kind, notice)):
            self._wake.set()

    def _count(self, row: LiveRow) -> None:
        self.since_start.add(row)
        today = self.today
        if today is not None and today.start_us <= row["ts_us"] < today.end_us:
            today.totals.add(row)
            if row["committed_at"] <= today.check_until:
                today.unchecked.append(row)

    def _put(self, item: Item) -> bool:
        if self._size < self.max_queue:
            self._queue.append(item)
            self._size += 1
            return True
        self.dropped_total += 1
        if self._queue and self._queue[-1][0] == LAGGED:
            self._queue[-1][1][0] += 1
        else:
            self._queue.append((LAGGED, [1]))
        return True

    def take(self) -> Item | None:
        """The next item, or None when the queue is empty."""
        if not self._queue:
            self._wake.clear()
            return None
        kind, value = self._queue.popleft()
        if kind == LAGGED:
            return (LAGGED, value[0])
        self._size -= 1
        self.delivered_total += 1
        return (kind, value)

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
