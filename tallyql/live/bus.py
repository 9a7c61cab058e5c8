"""The live bus: committed events and notices, fanned out to this process's subscribers.

The writer calls `on_commit` after each commit; it only queues the batch (the writer never
waits on subscribers). The bus's task turns the batch into live rows, offers them to the
subscribers of each row's workspace (never waiting: every subscriber has a bounded queue;
subscribers of one filter share the batch's view, live/fanout.py),
hands them to the relay for other replicas, and tells batch observers (budgets) which
workspaces received events. Notices (limit warnings, alert firings, audit events) take the
same way. With a relay, rows and notices that arrive from other replicas are delivered here
with `deliver_rows` / `deliver_notice`, never relayed again.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tallyql.clock import clock
from tallyql.live.batches import BatchFeed
from tallyql.live.compact import LiveRow, compact_row
from tallyql.live.fanout import FilterKey, FilterView
from tallyql.live.subscriber import Subscriber
from tallyql.storage.ingest.record import WORKSPACE, ValidEvent

log = logging.getLogger(__name__)

BatchObserver = Callable[[set[int]], None]
Receiver = Subscriber | BatchFeed
"""What the bus offers rows to: a subscriber, or a feed standing for its coalesced members
(live/batches.py)."""


class Relay(Protocol):
    """Carries rows and notices to the other replicas."""

    def publish_rows(self, rows: Sequence[LiveRow]) -> None: ...

    def publish_notice(self, workspace_id: int, kind: str, notice: dict[str, Any]) -> None: ...

    def wants(self, workspace_id: int) -> bool: ...

    def interest_changed(self) -> None: ...


@dataclass
class BusStats:
    batches: int = 0
    rows: int = 0
    deliveries: int = 0
    notices: int = 0


class LiveBus:
    def __init__(self) -> None:
        self._subscribers: dict[int, set[Receiver]] = defaultdict(set)
        self._pending: deque[tuple[float, Sequence[ValidEvent]]] = deque()
        self._wake = asyncio.Event()
        self.relay: Relay | None = None
        self.observers: list[BatchObserver] = []
        self.stats = BusStats()

    # ------------------------------------------------------------------ subscribers

    def subscribe(self, subscriber: Receiver) -> None:
        fresh = not self._subscribers.get(subscriber.workspace_id)
        self._subscribers[subscriber.workspace_id].add(subscriber)
        if fresh and self.relay is not None:
            self.relay.interest_changed()

    def unsubscribe(self, subscriber: Receiver) -> None:
        subscribers = self._subscribers.get(subscriber.workspace_id)
        if subscribers is None:
            return
        subscribers.discard(subscriber)
        if not subscribers:
            del self._subscribers[subscriber.workspace_id]
            if self.relay is not None:
                self.relay.interest_changed()

    @property
    def subscriber_count(self) -> int:
        """Subscriptions in this process: a feed counts as its members."""
        return sum(
            len(r.members) if isinstance(r, BatchFeed) else 1
            for receivers in self._subscribers.values()
            for r in receivers
        )

    def subscribers(self, workspace_id: int) -> tuple[Receiver, ...]:
        """This process's subscribers of one workspace (for /health and tests)."""
        return tuple(self._subscribers.get(workspace_id, ()))

    def workspaces(self) -> list[int]:
        """Workspaces with a subscriber in this process."""
        return sorted(self._subscribers)

    # ------------------------------------------------------------------ input

    def on_commit(self, events: Sequence[ValidEvent]) -> None:
        """The writer's commit listener: O(1), never waits."""
        if events:
            self._pending.append((clock.timestamp(), events))
            self._wake.set()

    def publish_notice(self, workspace_id: int, kind: str, notice: dict[str, Any]) -> None:
        """A notice for one workspace's subscribers here and on every other replica."""
        self.deliver_notice(workspace_id, kind, notice)
        if self.relay is not None:
            self.relay.publish_notice(workspace_id, kind, notice)

    # ------------------------------------------------------------------ delivery

    def deliver_rows(self, rows: Sequence[LiveRow]) -> None:
        by_workspace: dict[int, list[LiveRow]] = defaultdict(list)
        for row in rows:
            if row.workspace_id in self._subscribers:
                by_workspace[row.workspace_id].append(row)
        for workspace_id, batch in by_workspace.items():
            views: dict[FilterKey, FilterView] = {}
            for subscriber in tuple(self._subscribers.get(workspace_id, ())):
                view = views.get(subscriber.filter_key)
                if view is None:
                    view = views[subscriber.filter_key] = FilterView(subscriber.matcher, batch)
                subscriber.offer(view)
                self.stats.deliveries += len(view.rows)

    def deliver_notice(self, workspace_id: int, kind: str, notice: dict[str, Any]) -> None:
        self.stats.notices += 1
        for subscriber in tuple(self._subscribers.get(workspace_id, ())):
            subscriber.offer_notice(kind, notice)

    async def run(self) -> None:
        """Drain committed batches, for the life of the process."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                committed_at, events = self._pending.popleft()
                try:
                    self._process(committed_at, events)
                except Exception:
                    log.exception("live bus failed on a batch of %d events", len(events))
                await asyncio.sleep(0)  # let subscribers and requests run between batches

    def _process(self, committed_at: float, events: Sequence[ValidEvent]) -> None:
        self.stats.batches += 1
        relay = self.relay
        workspaces = {e.record[WORKSPACE] for e in events}
        wanted = {
            w
            for w in workspaces
            if w in self._subscribers or (relay is not None and relay.wants(w))
        }
        if wanted:  # else nobody here or elsewhere listens: no live rows at all
            rows = [
                compact_row(e.record, committed_at) for e in events if e.record[WORKSPACE] in wanted
            ]
            self.stats.rows += len(rows)
            self.deliver_rows(rows)
            if relay is not None:
                relay.publish_rows(rows)
        for observer in self.observers:
            try:
                observer(workspaces)
            except Exception:
                log.exception("live batch observer failed")
