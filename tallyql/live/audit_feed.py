"""Committed audit events onto the bus, whoever wrote them (this process, another replica,
the CLI).

PostgreSQL: a trigger (migration 0004_live) NOTIFYs each new audit event's key on commit;
every replica reads the rows its subscribers want. SQLite: the feed polls the table in
insertion (rowid) order. Either way only committed rows are seen, and each replica delivers
to its own subscribers only.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any

import orjson
from sqlalchemy import Integer, func, literal_column, select, tuple_

from tallyql.live.bus import LiveBus
from tallyql.live.pg_listener import PgListener
from tallyql.live.subscriber import AUDIT
from tallyql.storage.database import Database
from tallyql.storage.jobs import PeriodicJob
from tallyql.storage.tables import audit_events
from tallyql.storage.types import to_micros

log = logging.getLogger(__name__)

AUDIT_CHANNEL = "tallyql_audit"
FETCH_DELAY = 0.02  # seconds to gather keys before reading them
POLL_BATCH = 1000
ROWID = literal_column("audit_events.rowid", Integer)  # SQLite's insertion order


def audit_notice(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "ts_us": to_micros(row["ts"]),
        "actor_id": row["actor_id"],
        "actor_type": row["actor_type"],
        "action": row["action"],
        "resource_type": row["resource_type"],
        "resource_id": row["resource_id"],
        "source_ip": row["source_ip"],
        "outcome": row["outcome"],
        "details": row["details"],
    }


class PgAuditFeed:
    def __init__(self, db: Database, bus: LiveBus, listener: PgListener) -> None:
        self._db = db
        self._bus = bus
        self._keys: list[tuple[int, str]] = []
        self._task: asyncio.Task[None] | None = None
        self._listener = listener
        listener.add(AUDIT_CHANNEL, self._on_notify)

    async def catch_up(self) -> None:
        """Deliver every row committed so far (its notification fetched by a round trip on
        the listening connection), so that a subscriber registered next does not get them."""
        await self._listener.round_trip()
        if self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    def _on_notify(self, payload: str) -> None:
        key = orjson.loads(payload)
        if key["w"] not in self._bus.workspaces():
            return
        self._keys.append((key["w"], key["id"]))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        await asyncio.sleep(FETCH_DELAY)
        while self._keys:
            keys, self._keys = self._keys[:POLL_BATCH], self._keys[POLL_BATCH:]
            try:
                async with self._db.read() as conn:
                    rows = (
                        await conn.execute(
                            select(audit_events)
                            .where(tuple_(audit_events.c.workspace_id, audit_events.c.id).in_(keys))
                            .order_by(audit_events.c.ts, audit_events.c.id)
                        )
                    ).mappings()
                    for row in rows:
                        self._bus.deliver_notice(row["workspace_id"], AUDIT, audit_notice(row))
            except Exception:
                log.exception("live audit feed: reading %d audit events failed", len(keys))


class SqliteAuditFeed(PeriodicJob):
    """Polls for new audit events every `poll_seconds` (its first run sets the start)."""

    name = "live_audit"

    def __init__(
        self,
        db: Database,
        bus: LiveBus,
        poll_seconds: float,
        reports: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(poll_seconds, reports)
        self._db = db
        self._bus = bus
        self._last: int | None = None  # the highest rowid read; None until the first read
        self._lock = asyncio.Lock()

    async def work(self) -> dict[str, Any]:
        await self.catch_up()
        return {}

    async def catch_up(self) -> None:
        """Deliver every row committed so far that the feed has not read yet, so that a
        subscriber registered next receives only rows committed after it. The first call
        only sets the starting point: rows older than the feed are history, not live."""
        async with self._lock:
            if self._last is None:
                self._last = await self._max_rowid()
                return
            while True:
                self._last, read = await self._poll(self._last)
                if read < POLL_BATCH:
                    return

    async def _max_rowid(self) -> int:
        async with self._db.read() as conn:
            value = (await conn.execute(select(func.max(ROWID)).select_from(audit_events))).scalar()
        return int(value or 0)

    async def _poll(self, last: int) -> tuple[int, int]:
        """Reads and delivers up to POLL_BATCH rows after `last`: (the new last, rows read)."""
        read = 0
        async with self._db.read() as conn:
            rows = (
                await conn.execute(
                    select(ROWID.label("rowid_"), audit_events)
                    .where(last < ROWID)
                    .order_by(ROWID)
                    .limit(POLL_BATCH)
                )
            ).mappings()
            by_workspace: dict[int, list[Any]] = defaultdict(list)
            for row in rows:
                read += 1
                last = max(last, int(row["rowid_"]))
                by_workspace[row["workspace_id"]].append(row)
        wanted = set(self._bus.workspaces())
        for workspace_id, found in by_workspace.items():
            if workspace_id in wanted:
                for row in found:
                    self._bus.deliver_notice(workspace_id, AUDIT, audit_notice(row))
        return last, read
