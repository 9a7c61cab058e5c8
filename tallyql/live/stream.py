"""One live subscription as an async iterator of items, from registration to cleanup.

Items are `(kind, value)`: a live row for `request`/`error`, a notice dict for
`limit_warning`/`audit`/`alert`, a count for `lagged`, and a `CostSnapshot` for
`cost_update` (one at the start, then every `interval` seconds).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from tallyql.clock import clock
from tallyql.engine.query.filters import EventFilterSpec
from tallyql.engine.query.periods import Period, period_bounds
from tallyql.live.batches import Outlet
from tallyql.live.fanout import ERROR, REQUEST
from tallyql.live.matcher import compile_matcher
from tallyql.live.service import LiveService
from tallyql.live.subscriber import AUDIT, COST_UPDATE, Item, Subscriber, TodayCount
from tallyql.live.today import Marker, totals_between, visible_in_base
from tallyql.live.totals import Totals
from tallyql.storage.types import to_micros


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


@dataclass(frozen=True)
class BatchRequest:
    """A coalesced subscription: the events of `types` (REQUEST, ERROR) matching `filter`,
    gathered for at most `window` seconds into one item."""

    workspace_id: int
    filter: EventFilterSpec
    types: frozenset[str]
    window: float


CLOCK_SLACK = 1.0
"""Seconds by which an event's commit stamp may trail its commit (or replicas' clocks
differ): events stamped up to this long after the base was read are checked against it."""


@dataclass
class _Day:
    start: datetime
    end: datetime
    base: Totals
    marker: Marker
    count: TodayCount


async def open_stream(live: LiveService, request: StreamRequest) -> AsyncGenerator[Item, None]:
    """The items of one subscription; unregisters when the consumer stops or disconnects."""
    if AUDIT in request.types:
        await live.audit_caught_up()  # audit events committed before this stream are history
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
        filter_key=(request.filter, groups),  # a GroupSet is equal only to itself
        max_age=live.max_age,
    )
    since = clock.now()
    live.bus.subscribe(subscriber)
    try:
        if live.relay is not None:
            await live.relay.sync()
        day: _Day | None = None
        if wants_cost:
            day = await _start_day(live, request, subscriber)
            yield (COST_UPDATE, _snapshot(request, subscriber, since, day))
        pacer = live.pacer
        loop = asyncio.get_running_loop()
        next_update = loop.time() + request.interval
        while True:
            await subscriber.wait(next_update - loop.time() if wants_cost else None)
            while (item := subscriber.take()) is not None:
                await pacer.turn()
                started = time.perf_counter()
                yield item
                pacer.done(started)
                if wants_cost and loop.time() >= next_update:
                    break
            if wants_cost and loop.time() >= next_update:
                assert day is not None
                next_update = loop.time() + request.interval
                if clock.now() >= day.end:
                    day = await _start_day(live, request, subscriber)
                elif day.count.unchecked:
                    await _check(live, request, day)
                yield (COST_UPDATE, _snapshot(request, subscriber, since, day))
    finally:
        live.bus.unsubscribe(subscriber)
        if groups is not None:
            live.membership.untrack(groups)


async def open_batch_stream(live: LiveService, request: BatchRequest) -> AsyncGenerator[Item, None]:
    """The windows of one coalesced subscription (live/batches.py) and its Lagged notices;
    leaves its feed when the consumer stops or disconnects."""
    groups = None
    if request.filter.groups:
        groups = await live.membership.track(request.workspace_id, request.filter.groups)
    member = live.batches.join(
        request.workspace_id,
        compile_matcher(request.filter, groups),
        (request.filter, groups),  # a GroupSet is equal only to itself
        REQUEST in request.types,
        ERROR in request.types,
        request.window,
        live.queue_size,
        live.max_age,
    )
    try:
        if live.relay is not None:
            await live.relay.sync()
        pacer = live.pacer
        while True:
            await member.wait()
            while (item := member.take()) is not None:
                await pacer.turn()
                started = time.perf_counter()
                yield item
                pacer.done(started)
    finally:
        live.batches.leave(member)
        if groups is not None:
            live.membership.untrack(groups)


async def run_batch_outlet(live: LiveService, request: BatchRequest, outlet: Outlet) -> None:
    """A coalesced subscription whose windows the feed's sender writes to `outlet` itself
    (live/batches.py): holds its membership until cancelled (the client completes the
    operation or disconnects), then leaves the feed."""
    groups = None
    if request.filter.groups:
        groups = await live.membership.track(request.workspace_id, request.filter.groups)
    member = live.batches.join(
        request.workspace_id,
        compile_matcher(request.filter, groups),
        (request.filter, groups),
        REQUEST in request.types,
        ERROR in request.types,
        request.window,
        live.queue_size,
        live.max_age,
        outlet=outlet,
        pacer=live.sender_pacer,
    )
    try:
        if live.relay is not None:
            await live.relay.sync()
        await asyncio.Event().wait()  # until cancelled
    finally:
        live.batches.leave(member)
        if groups is not None:
            live.membership.untrack(groups)


async def _start_day(live: LiveService, request: StreamRequest, subscriber: Subscriber) -> _Day:
    """Read today's base from the engine; events streamed from now on are added to it, but
    for those the base counted already."""
    start, end = period_bounds(Period.DAY, clock.now(), request.tz)
    count = TodayCount(to_micros(start), to_micros(end))
    subscriber.today = count
    base, marker = await totals_between(live.db, request.workspace_id, request.filter, start, end)
    count.check_until = clock.timestamp() + CLOCK_SLACK
    day = _Day(start, end, base, marker, count)
    await _check(live, request, day)
    return day


async def _check(live: LiveService, request: StreamRequest, day: _Day) -> None:
    """Take off the streamed events that the base counted already."""
    rows, day.count.unchecked = day.count.unchecked, []
    if not rows:
        return
    by_id = {row.id: row for row in rows}
    counted = await visible_in_base(live.db, request.workspace_id, day.marker, list(by_id))
    for event_id in counted:
        day.count.totals.remove(by_id[event_id])


def _snapshot(
    request: StreamRequest, subscriber: Subscriber, since: datetime, day: _Day
) -> CostSnapshot:
    return CostSnapshot(
        at=clock.now(),
        since=since,
        since_start=Totals(**vars(subscriber.since_start)),
        today_start=day.start,
        today=day.base.plus(day.count.totals),
        timezone=request.tz.key,
    )
