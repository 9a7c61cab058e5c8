"""One live subscription as an async iterator of items, from registration to cleanup.

Items are `(kind, value)`: a live row for `request`/`error`, a notice dict for
`limit_warning`/`audit`/`alert`, a count for `lagged`, and a `CostSnapshot` for
`cost_update` (one at the start, then every `interval` seconds).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from tallyql.engine.filters import EventFilterSpec
from tallyql.engine.periods import Period, period_bounds
from tallyql.live.matcher import compile_matcher
from tallyql.live.subscriber import COST_UPDATE, Item, Subscriber, TodayCount
from tallyql.live.today import totals_between
from tallyql.live.totals import Totals
from tallyql.storage.types import to_micros

if TYPE_CHECKING:
    from tallyql.live.service import LiveService


@dataclass(frozen=True)
class StreamRequest:
    workspace_id: int
    filter: EventFilterSpec
    types: frozenset[str]
    interval: float
    tz: ZoneInfo


@dataclass(frozen=True)
class CostSnapshot:
    at: datetime
    since: datetime
    since_start: Totals
    today_start: datetime
    today: Totals
    timezone: str


class _Day:
    def __init__(self, start: datetime, end: datetime, base: Totals, count: TodayCount) -> None:
        self.start, self.end, self.base, self.count = start, end, base, count


async def open_stream(live: LiveService, request: StreamRequest) -> AsyncIterator[Item]:
    """The items of one subscription; unregisters when the consumer stops or disconnects."""
    groups = None
    if request.filter.groups:
        groups = await live.membership.track(request.workspace_id, request.filter.groups)
    wants_cost = COST_UPDATE in request.types
    subscriber = Subscriber(
        request.workspace_id,
        compile_matcher(request.filter, groups),
        request.types,
        live.queue_size,
        count_totals=wants_cost,
    )
    since = datetime.now(UTC)
    live.bus.subscribe(subscriber)
    try:
        if live.relay is not None:
            await live.relay.sync()
        day: _Day | None = None
        if wants_cost:
            day = await _start_day(live, request, subscriber)
            yield (COST_UPDATE, _snapshot(request, subscriber, since, day))
        loop = asyncio.get_running_loop()
        next_update = loop.time() + request.interval
        while True:
            await subscriber.wait(next_update - loop.time() if wants_cost else None)
            while (item := subscriber.take()) is not None:
                yield item
                if wants_cost and loop.time() >= next_update:
                    break
            if wants_cost and loop.time() >= next_update:
                assert day is not None
                next_update = loop.time() + request.interval
                if datetime.now(UTC) >= day.end:
                    day = await _start_day(live, request, subscriber)
                yield (COST_UPDATE, _snapshot(request, subscriber, since, day))
    finally:
        live.bus.unsubscribe(subscriber)
        if groups is not None:
            live.membership.untrack(groups)


async def _start_day(live: LiveService, request: StreamRequest, subscriber: Subscriber) -> _Day:
    """Read today's base from the engine; events committed from now on are added to it."""
    start, end = period_bounds(Period.DAY, datetime.now(UTC), request.tz)
    count = TodayCount(to_micros(start), to_micros(end), started_at=time.time())
    subscriber.today = count
    base = await totals_between(live.db, request.workspace_id, request.filter, start, end)
    return _Day(start, end, base, count)


def _snapshot(
    request: StreamRequest, subscriber: Subscriber, since: datetime, day: _Day
) -> CostSnapshot:
    return CostSnapshot(
        at=datetime.now(UTC),
        since=since,
        since_start=Totals(**vars(subscriber.since_start)),
        today_start=day.start,
        today=day.base.plus(day.count.totals),
        timezone=request.tz.key,
    )
