"""The live machinery of one process: the bus, group membership for filters, the audit feed
and, on PostgreSQL, the LISTEN/NOTIFY relay to other replicas."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from tallyql.live.audit_feed import PgAuditFeed, SqliteAuditFeed
from tallyql.live.batches import (
    PRESSED_SENDER_SHARE,
    SEND_BUDGET,
    SENDER_SHARE,
    BatchFeeds,
    SendBudget,
)
from tallyql.live.bus import LiveBus
from tallyql.live.membership import GroupMembership
from tallyql.live.pacer import DeliveryPacer
from tallyql.live.pg_listener import PgListener
from tallyql.live.relay import PgRelay
from tallyql.storage.database import Database

Spawn = Callable[[str, Coroutine[Any, Any, None]], None]


class LiveService:
    def __init__(
        self,
        db: Database,
        queue_size: int,
        group_refresh_seconds: float,
        audit_poll_seconds: float,
        cross_replica: bool = True,
        delivery_share: float = 0.5,
        max_age: float = 10.0,
        send_buffer_bytes: int = SEND_BUDGET,
        reports: dict[str, dict[str, Any]] | None = None,
        ingest_pressure: Callable[[], bool] | None = None,
    ) -> None:
        """`reports`: where the group refresh and SQLite audit poll jobs report (/health).
        `ingest_pressure`: whether ingest is saturated now (the coalesced feeds' senders then
        keep to `PRESSED_SENDER_SHARE`)."""
        self.db = db
        self.queue_size = queue_size
        self.max_age = max_age
        self.pacer = DeliveryPacer(delivery_share)
        self._ingest_pressure = ingest_pressure
        sender_share = min(delivery_share, SENDER_SHARE)
        self.sender_pacer = DeliveryPacer(
            sender_share,
            pressed_share=min(sender_share, PRESSED_SENDER_SHARE),
            pressure=self._pressed,
            pressed_split=self._serving_replicas,
        )
        """Paces the coalesced feeds' senders (live/batches.py), apart from the per-subscriber
        deliveries: their costs are CPU time, not capped per delivery."""
        self.bus = LiveBus()
        self.batches = BatchFeeds(self.bus, SendBudget(total=send_buffer_bytes))
        self.membership = GroupMembership(db, group_refresh_seconds, reports)
        self.listener: PgListener | None = None
        self.relay: PgRelay | None = None
        self._audit: PgAuditFeed | SqliteAuditFeed
        if db.dialect.notifications:
            self.listener = PgListener(db.asyncpg_dsn)
            self._audit = PgAuditFeed(db, self.bus, self.listener)
            if cross_replica:
                self.relay = PgRelay(db, self.bus, self.listener, ingest_pressure)
                self.bus.relay = self.relay
        else:
            self._audit = SqliteAuditFeed(db, self.bus, audit_poll_seconds, reports)

    def _pressed(self) -> bool:
        """Whether ingest is saturated here, or on a replica whose rows arrive here."""
        if self._ingest_pressure is not None and self._ingest_pressure():
            return True
        return self.relay is not None and self.relay.pressed

    def _serving_replicas(self) -> int:
        """Server processes with live subscribers, this one included (1 without a relay)."""
        return 1 if self.relay is None else 1 + self.relay.remote_serving

    def start(self, spawn: Spawn) -> None:
        spawn("live-bus", self.bus.run())
        spawn(self.membership.name, self.membership.run_forever())
        if self.listener is not None:
            spawn("live-listen", self.listener.run())
        if self.relay is not None:
            spawn("live-relay", self.relay.run())
        if isinstance(self._audit, SqliteAuditFeed):  # PostgreSQL's is driven by the listener
            spawn(self._audit.name, self._audit.run_forever())

    async def audit_caught_up(self) -> None:
        """Delivers the audit events committed so far to the current subscribers; a subscriber
        registered right after this receives only audit events committed after it."""
        await self._audit.catch_up()

    def report(self) -> dict[str, Any]:
        """What /health shows of the live bus."""
        report: dict[str, Any] = {
            "subscribers": self.bus.subscriber_count,
            "batches": self.bus.stats.batches,
            "rows": self.bus.stats.rows,
            "deliveries": self.bus.stats.deliveries,
            "notices": self.bus.stats.notices,
            "paced_deliveries": self.pacer.waits,
            "sender_charges": self.sender_pacer.charges,
            "sender_pressed_charges": self.sender_pacer.pressed_charges,
            "batch_feeds": len(self.batches.feeds),
            "batch_windows": sum(f.stats.windows for f in self.batches.feeds.values()),
            "socket_send_share_bytes": self.batches.budget.per_socket,
        }
        if self.relay is not None:
            report["relay"] = {
                "origin": self.relay.origin,
                "sent": self.relay.sent,
                "received": self.relay.received,
                "dropped": self.relay.dropped,
                "connected": self.listener is not None and self.listener.connected.is_set(),
            }
        return report
