"""Coalesced live delivery: a subscription's committed events gathered into one item per window.

With one message per event per subscriber, a thousand people watching a workspace that
commits a thousand events a second need a million WebSocket frames a second, which no
process on two cores sends. A coalesced subscription instead joins a `BatchFeed`: one per
workspace, filter, choice of event types and window length in this process, registered on
the bus like a single subscriber (so publishing costs the same whatever the number of
people watching). The feed gathers the matching rows of every batch the bus hands it; when
its window closes (at most `window` seconds after the first row arrived) it makes one
`EventWindow` (the events in commit order, the window's totals and the feed's running
totals) and puts that same object into the bounded queue of every member. Every member of a
feed thus receives identical windows, which the transport renders and encodes once
(schema/live_render.py) and sends as the same bytes to every socket.

Guarantees kept from the per-event form:
- commit order: rows are appended in the order the bus delivers them, windows in order;
- nothing before the subscription: a member that joins while a window is open closes that
  window first (its members receive it; the newcomer does not), so its first window holds
  only rows the bus delivered after it joined;
- bounded queues: a member holds at most `max_queue` events, or a single window larger than
  that which arrived at an empty queue (so that a reader that keeps up still receives a
  window larger than the bound); a window that does not fit is dropped for that member and
  counted, and the member receives a `lagged` item with the count of dropped events in its
  place; windows older than `max_age` seconds are dropped the same way;
- cleanup: the last member leaving unregisters the feed from the bus and cancels its timer.

A member may instead have an `Outlet`: a socket the feed writes to itself (a WebSocket
transport's fast path, http/live_sockets.py). Queues, a task per subscriber and a send call
through the ASGI stack per window were where the time went with a thousand subscribers; an
outlet member has none of them. The feed's one sender task takes each closed window, has it
encoded once per distinct outlet group (the same operation and message envelope: the same
bytes) and writes those bytes to every outlet without waiting. A socket whose unsent bytes
would, with the window, pass its share of the process's budget (`SendBudget`: a client that
does not read) does not get the window: it is counted as dropped for that member, who
receives a Lagged message with the count before its next window, so a slow socket never
delays the others. The sender works through the members in
slices, letting whatever else is ready (ingest, queries) run between two slices; its time
is charged to its own pacer (live/pacer.py, `SENDER_SHARE` of the loop), and once it has
used more than its share over a whole window it waits for its turn there. (Waiting for a
turn at every slice, with the pacer's 5 ms burst, made a pass over 1,000 sockets take one
loop iteration per slice: under load, longer than a window, so windows queued up.)
Windows it has not reached within `max_age` are dropped the same way, and at most
`MAX_OUTBOX` closed windows wait for it.

Running totals count every event of the feed's filter (whatever the event types chosen,
dropped windows included) since `since`: the moment this process started the feed, at or
before the subscription of each member (members of one feed share one frame, so they share
one starting point too; it is in every item).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, Protocol

from tallyql.clock import clock
from tallyql.live.compact import LiveRow
from tallyql.live.fanout import FilterKey, FilterView, items_of
from tallyql.live.matcher import Matcher
from tallyql.live.pacer import DeliveryPacer
from tallyql.live.subscriber import LAGGED, Item
from tallyql.live.totals import Totals

log = logging.getLogger(__name__)

BATCH = "batch"
MAX_OUTBOX = 64
"""Closed windows a feed's sender may be behind by; the oldest is dropped (and counted for
its members) beyond that, so memory stays bounded when sending cannot keep up."""
PRESSED_OUTBOX = 8
"""Closed windows a feed's sender may be behind by while its pacer is pressed (ingest
saturated). At the pressed share it sends a window now and then, so windows pile up and are
dropped anyway; held until `MAX_OUTBOX` pushed them out, a burst's windows were the rows of the
last six seconds, which every young garbage collection walked: 100-180 ms pauses on both
replicas, and hundreds of MiB (bench/live.py --replicas 2). Fewer held means the ones sent
are the freshest."""
SENDER_SHARE = 0.25
"""Share of the event loop's time that the feeds' senders may use when they are busy and
ingest is not saturated (with `LIVE_DELIVERY_SHARE` if that is smaller): what is left is
ingest's and the queries'; past the share, windows wait, age and are dropped as Lagged.
1,000 subscribers at 1,000 events/s are charged about 14 % (bench/live.py: 7.5 passes a
second over 1,000 sockets, each about 15 ms of CPU and 8.7 MB at `BYTE_COST`); at 15 %, the
share before, the sender waited for its turn now and then, and delivery's p99 rose from 120-150
to 215-224 ms. Ingest's own protection is `PRESSED_SENDER_SHARE`, not this share."""
PRESSED_SENDER_SHARE = 0.03
"""The senders' share while ingest is saturated (`Writer.saturated`: a batch was being
written most of the last half second, here or on a replica whose rows arrive here). On one
machine with the database, delivering 1,000 events a second to 1,000 sockets
costs the server and the kernel about 0.15 s of CPU a second at `SENDER_SHARE`, which the
database then lacks: maximal ingest fell 23-27 % (bench/live.py). While ingest waits for the
database, the feeds send at this share; windows they cannot send in time are dropped and
reported as Lagged, with exact running totals, and full delivery resumes when ingest is no
longer saturated. Replicas with subscribers split it evenly (live/service.py): what the live
path takes from ingest while it is saturated is the same whether one process or several serve
the subscribers (each process sending at the whole share made two replicas cost ingest twice
as much, their receiving of the relayed rows aside)."""
BYTE_COST = 0.5e-9
"""Seconds of CPU charged to the sender per byte written, besides the CPU time of the slice
that wrote it. A socket takes at once what its kernel buffer holds; the event loop sends the
rest when the socket becomes writable, outside the slice, and the kernel's TCP work follows
the bytes either way. Measured on loopback (bench/live.py, maximal ingest with 1,000
subscribers): the server's kernel time grew by 0.06 s/s for about 180 MB/s sent, with the
loop's deferred writes on top; in bursts a window is hundreds of kB per socket, so counting
slices alone let the feeds use four times their share."""
SLICE = 100
"""Outlets written between two yields to the loop (a few milliseconds of writes)."""
MAX_BUFFER = 512 * 1024
"""Bytes a socket may hold unsent, window included, for it to be given another window, when
few sockets share the process's budget (`SendBudget`)."""
MIN_BUFFER = 16 * 1024
"""The least a socket may hold unsent however many share the budget (a few windows at 1,000
events a second)."""
SEND_BUDGET = 64 * 1024 * 1024
"""Bytes that all of this process's live sockets may hold unsent together, by default
(TALLYQL_LIVE_SEND_BUFFER_MB)."""


@dataclass
class SendBudget:
    """What every live socket of the process may hold unsent: the budget shared evenly.

    With a fixed 512 KiB per socket, a thousand subscribers whose clients read slower than a
    burst of ingest could make the process hold half a gigabyte of unsent frames; the bound
    grew with the number of sockets. (Measured with bench/live.py, the peak RSS after a burst
    at 25,000 events/s stayed about 640 MiB with the budget too: what remains is the
    process's warm-up to about 380 MiB and one large window per socket that kept up.) A
    socket's share is the budget divided by the sockets, between MIN_BUFFER and MAX_BUFFER;
    one whose unsent bytes would pass it with the next window is not given that window (it
    is told Lagged), unless it holds nothing unsent: a client that keeps up always gets a
    window, however large. So the process holds at most the budget (or MIN_BUFFER per
    socket, if more), plus one window per socket that kept up."""

    total: int = SEND_BUDGET
    sockets: int = 0
    per_socket: int = MAX_BUFFER

    def count(self, change: int) -> None:
        """A socket joined (+1) or left (-1)."""
        self.sockets += change
        share = self.total // max(1, self.sockets)
        self.per_socket = max(MIN_BUFFER, min(MAX_BUFFER, share))


FeedKey = Hashable


@dataclass(frozen=True, eq=False)
class EventWindow:
    """One window of a feed, shared (the same object) by every member of the feed."""

    sequence: int
    """Windows made by the feed before this one (count)."""
    opened_at: float
    """When the first row of the window reached the feed (epoch seconds)."""
    closed_at: float
    """When the window closed (epoch seconds)."""
    rows: tuple[LiveRow, ...]
    """The window's rows of the chosen event types, in commit order."""
    errors_apart: bool
    """Whether failed requests are ERROR items (when ERROR was chosen), not REQUEST ones."""
    totals: Totals
    """Totals of the window's rows that match the filter (every type)."""
    running: Totals
    """Totals of the feed's matching rows since `since`, this window included."""
    since: float
    """When the feed started counting (epoch seconds)."""

    @property
    def items(self) -> list[Item]:
        """(REQUEST or ERROR, live row) in commit order. Made when the window is rendered,
        once for all its members: a window keeps its rows alone, since a tuple per row held
        while windows wait to be sent is that many more objects for each young garbage
        collection to walk (100-180 ms pauses in bursts, bench/live.py --replicas 2)."""
        return items_of(self.rows, self.errors_apart)


@dataclass
class FeedStats:
    windows: int = 0
    events: int = 0


class Outlet(Protocol):
    """A socket that a feed's sender writes a member's windows to, without waiting."""

    @property
    def group(self) -> Hashable:
        """Outlets with equal groups are sent the same bytes for a window."""
        ...

    def alive(self) -> bool:
        """Whether messages may still be written (the socket is open, the operation on)."""
        ...

    def buffered(self) -> int:
        """Bytes written to the socket and not yet sent."""
        ...

    def encode(self, window: EventWindow) -> bytes:
        """The wire message of a window (made once per group and window)."""
        ...

    def encode_lagged(self, count: int) -> bytes:
        """The wire message of a Lagged notice for `count` missed events."""
        ...

    def write(self, data: bytes) -> None:
        """Hand bytes to the socket (never waits)."""
        ...


class BatchMember:
    """One coalesced subscription's mailbox: windows of its feed, a lag count, a bound; or,
    with an outlet, the socket the feed's sender writes to and the count it has missed."""

    def __init__(
        self, feed: BatchFeed, max_queue: int, max_age: float, outlet: Outlet | None = None
    ) -> None:
        self.feed = feed
        self.outlet = outlet
        self.missed = 0
        """Events dropped for an outlet member since its last Lagged message (count)."""
        self.max_queue = max_queue
        self.max_age = max_age
        self.dropped_total = 0
        """Events dropped for this member (count)."""
        self.delivered_windows = 0
        self._queue: deque[EventWindow | list[int]] = deque()
        self._size = 0  # events in the queued windows
        self._wake = asyncio.Event()

    @property
    def queued(self) -> int:
        """Events waiting in this member's queue."""
        return self._size

    def put(self, window: EventWindow) -> None:
        """Queue a window (never waits): dropped and counted when it does not fit."""
        size = len(window.rows)
        if self._queue and self._size + size > self.max_queue:
            self._lag(size)
        else:
            self._queue.append(window)
            self._size += size
        self._wake.set()

    def _lag(self, dropped: int) -> None:
        self.dropped_total += dropped
        tail = self._queue[-1] if self._queue else None
        if isinstance(tail, list):
            tail[0] += dropped
        else:
            self._queue.append([dropped])

    def take(self) -> Item | None:
        """The next item, (BATCH, window) or (LAGGED, count), or None when empty."""
        if not self._queue:
            self._wake.clear()
            return None
        if self.max_age != math.inf and (stale := self._drop_stale()):
            return (LAGGED, stale)
        head = self._queue.popleft()
        if isinstance(head, list):
            return (LAGGED, head[0])
        self._size -= len(head.rows)
        self.delivered_windows += 1
        return (BATCH, head)

    def _drop_stale(self) -> int:
        """Drop the windows at the head that closed more than max_age ago, with the lag
        notices among them; the count of events missing there."""
        cutoff = clock.timestamp() - self.max_age
        missing = 0
        while self._queue:
            head = self._queue[0]
            if isinstance(head, list):
                if not missing:
                    break  # a notice of its own; anything stale behind it comes next
                missing += head[0]
            elif head.closed_at < cutoff:
                missing += len(head.rows)
                self._size -= len(head.rows)
                self.dropped_total += len(head.rows)
            else:
                break
            self._queue.popleft()
        return missing

    def drop(self, size: int) -> None:
        """A window this outlet member will not get: counted, and told before the next."""
        self.missed += size
        self.dropped_total += size

    def settle(self, max_buffer: int) -> None:
        """Write the Lagged message owed, if the socket has room for it."""
        outlet = self.outlet
        assert outlet is not None
        if self.missed and outlet.alive() and outlet.buffered() < max_buffer:
            outlet.write(outlet.encode_lagged(self.missed))
            self.missed = 0

    def send(
        self,
        window: EventWindow,
        size: int,
        stale: bool,
        encoded: dict[Hashable, bytes],
        max_buffer: int,
    ) -> int:
        """Write a window to this member's outlet, or count it as missed when the window is
        stale or the socket's unsent bytes with it would exceed `max_buffer` (a socket with
        nothing unsent always takes it); the bytes written."""
        outlet = self.outlet
        assert outlet is not None
        if not outlet.alive():
            return 0
        if stale:
            self.drop(size)
            return 0
        group = outlet.group
        data = encoded.get(group)
        if data is None:
            data = encoded[group] = outlet.encode(window)
        unsent = outlet.buffered()
        if unsent and unsent + len(data) > max_buffer:
            self.drop(size)
            return 0
        written = len(data)
        if self.missed:
            notice = outlet.encode_lagged(self.missed)
            outlet.write(notice)
            written += len(notice)
            self.missed = 0
        outlet.write(data)
        self.delivered_windows += 1
        return written

    async def wait(self) -> None:
        """Until an item arrives."""
        if self._queue:
            return
        self._wake.clear()
        await self._wake.wait()


class BatchFeed:
    """The coalesced events of one workspace, filter, choice of types and window length.

    Registered on the bus in place of its members: the bus offers it each batch's shared
    `FilterView` like any subscriber (`workspace_id`, `filter_key`, `offer`,
    `offer_notice`)."""

    def __init__(
        self,
        key: FeedKey,
        workspace_id: int,
        matcher: Matcher,
        filter_key: FilterKey,
        wants_request: bool,
        wants_error: bool,
        window: float,
        budget: SendBudget,
    ) -> None:
        self.key = key
        self.workspace_id = workspace_id
        self.matcher = matcher
        self.filter_key = filter_key
        self.window = window
        self.members: set[BatchMember] = set()
        self.running = Totals()
        self.since = clock.timestamp()
        self.stats = FeedStats()
        self._wants_request = wants_request
        self._wants_error = wants_error
        self._chosen: list[LiveRow] = []
        self._totals = Totals()
        self._rows = 0
        self._opened_at = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self.pacer: DeliveryPacer | None = None
        self.budget = budget
        """The process's budget of unsent bytes (shared by every feed of BatchFeeds)."""
        self.max_age = math.inf
        self._outbox: deque[tuple[EventWindow, tuple[BatchMember, ...]]] = deque()
        self._sender: asyncio.Task[None] | None = None
        self._settle_timer: asyncio.TimerHandle | None = None

    # the bus's side (live/bus.py)

    def offer(self, view: FilterView) -> None:
        if not view.rows:
            return
        if not self._rows:
            self._opened_at = clock.timestamp()
            self._timer = asyncio.get_running_loop().call_later(self.window, self.flush)
        self._rows += len(view.rows)
        self._totals.absorb(view.totals)
        self._chosen.extend(view.of_types(self._wants_request, self._wants_error))

    def offer_events(self, rows: list[LiveRow]) -> None:
        self.offer(FilterView(self.matcher, rows))

    def offer_notice(self, kind: str, notice: dict[str, Any]) -> None:
        """Notices go to `events` subscriptions only."""

    # the window

    def flush(self) -> None:
        """Close the open window (if any) and queue it for every member."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._rows:
            return
        self.running.absorb(self._totals)
        window = EventWindow(
            sequence=self.stats.windows,
            opened_at=self._opened_at,
            closed_at=clock.timestamp(),
            rows=tuple(self._chosen),
            errors_apart=self._wants_error,
            totals=self._totals,
            running=Totals(**vars(self.running)),
            since=self.since,
        )
        self._chosen, self._totals, self._rows = [], Totals(), 0
        self.stats.windows += 1
        self.stats.events += len(window.rows)
        outlets: list[BatchMember] = []
        for member in self.members:
            if member.outlet is None:
                member.put(window)
            else:
                outlets.append(member)
        if outlets:
            # the members now, so that one joining before the sender gets here does not
            # receive a window closed before it joined
            self._post(window, tuple(outlets))

    # the sender (outlet members)

    def _post(self, window: EventWindow, members: tuple[BatchMember, ...]) -> None:
        pressed = self.pacer is not None and self.pacer.pressed()
        while len(self._outbox) >= (PRESSED_OUTBOX if pressed else MAX_OUTBOX):
            old, old_members = self._outbox.popleft()
            for member in old_members:
                member.drop(len(old.rows))
        self._outbox.append((window, members))
        if self._settle_timer is not None:  # the sender settles after this window
            self._settle_timer.cancel()
            self._settle_timer = None
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._send())

    async def _send(self) -> None:
        """Write each closed window to every outlet member it was closed for."""
        pacer = self.pacer
        while self._outbox:
            window, members = self._outbox.popleft()
            size = len(window.rows)
            encoded: dict[Hashable, bytes] = {}
            stale_at = window.closed_at + self.max_age
            for start in range(0, len(members), SLICE):
                if pacer is not None and pacer.ahead() > self.window:
                    await pacer.turn()  # over the delivery share for a whole window: wait
                elif start:
                    await asyncio.sleep(0)  # whatever is ready (ingest) runs first
                started, cpu = time.perf_counter(), time.thread_time()
                stale = clock.timestamp() > stale_at
                written = 0
                for member in members[start : start + SLICE]:
                    try:
                        written += member.send(window, size, stale, encoded, self.budget.per_socket)
                    except Exception:  # one socket's failure is not the others'
                        log.exception("live feed: writing a window to a socket failed")
                if pacer is not None:
                    # writes never wait: a slice's cost is the loop thread's CPU time (its
                    # wall time would also count other processes on a busy machine), and the
                    # cost of sending its bytes later
                    pacer.charge(started, time.thread_time() - cpu + written * BYTE_COST)
        self._settle()

    def _settle(self) -> None:
        """Tell the outlet members that missed events and got no window since how many, as
        soon as their sockets have room: a member whose last windows were dropped hears of it
        without waiting for more events. Comes back every window until all were told."""
        self._settle_timer = None
        owing = False
        for member in self.members:
            if member.missed and member.outlet is not None:
                member.settle(self.budget.per_socket)
                owing = owing or (member.missed > 0 and member.outlet.alive())
        if owing and not self._outbox:
            loop = asyncio.get_running_loop()
            self._settle_timer = loop.call_later(self.window, self._settle)

    def close(self) -> None:
        """Stop the timer and the sender and drop the open window (the last member left)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._sender is not None:
            self._sender.cancel()
            self._sender = None
        if self._settle_timer is not None:
            self._settle_timer.cancel()
            self._settle_timer = None
        self._outbox.clear()
        self._chosen, self._totals, self._rows = [], Totals(), 0


class Bus(Protocol):
    """Where a feed is registered to be offered each batch's rows (live/bus.py's LiveBus, which
    imports this module for `BatchFeed`, so it is named here by what a feed needs of it)."""

    def subscribe(self, feed: BatchFeed, /) -> None: ...

    def unsubscribe(self, feed: BatchFeed, /) -> None: ...


@dataclass
class BatchFeeds:
    """This process's feeds, made on the first member's arrival and dropped with the last's."""

    bus: Bus
    budget: SendBudget = field(default_factory=SendBudget)
    """Unsent bytes all outlet members' sockets may hold together."""
    feeds: dict[FeedKey, BatchFeed] = field(default_factory=dict)

    def join(
        self,
        workspace_id: int,
        matcher: Matcher,
        filter_key: FilterKey,
        wants_request: bool,
        wants_error: bool,
        window: float,
        max_queue: int,
        max_age: float,
        outlet: Outlet | None = None,
        pacer: DeliveryPacer | None = None,
    ) -> BatchMember:
        """Join (or start) the feed of a subscription; with an `outlet`, the feed's sender
        writes its windows to that socket (paced by `pacer`) instead of queueing them."""
        key = (workspace_id, filter_key, wants_request, wants_error, window)
        feed = self.feeds.get(key)
        if feed is None:
            feed = BatchFeed(
                key,
                workspace_id,
                matcher,
                filter_key,
                wants_request,
                wants_error,
                window,
                self.budget,
            )
            self.feeds[key] = feed
            self.bus.subscribe(feed)
        else:
            feed.flush()  # its open window holds rows from before this member joined
        member = BatchMember(feed, max_queue, max_age, outlet)
        if outlet is not None:
            feed.pacer = pacer
            feed.max_age = max_age
            self.budget.count(+1)
        feed.members.add(member)
        return member

    def leave(self, member: BatchMember) -> None:
        feed = member.feed
        if member in feed.members and member.outlet is not None:
            self.budget.count(-1)
        feed.members.discard(member)
        if not feed.members and self.feeds.get(feed.key) is feed:
            del self.feeds[feed.key]
            feed.close()
            self.bus.unsubscribe(feed)

    @property
    def member_count(self) -> int:
        return sum(len(feed.members) for feed in self.feeds.values())
