"""Daily sync of provider activity: every workspace with an OpenRouter connection has its
activity read (the last 30 completed days) and imported (imports/openrouter.py: idempotent,
nothing counted twice) once a day, and on demand (`syncProviderActivity`).

A sync is claimed with a conditional UPDATE (`claimed_until`), so one replica syncs a
connection at a time; its outcome (time, status, the import's counts or the error) is kept on
the connection and audited."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, or_, select, update

from tallyql.clock import clock
from tallyql.imports.openrouter import ImportRefused, import_activity
from tallyql.imports.openrouter_client import OpenRouterClient, ProviderError
from tallyql.ingest.service import IngestService
from tallyql.storage.audit import Actor, AuditRecord, audit_change, record_audit
from tallyql.storage.database import Database
from tallyql.storage.ingest.writer import WriterBusy, WriterFailed, WriterStopped
from tallyql.storage.jobs import PeriodicJob
from tallyql.storage.report_tables import provider_connections

log = logging.getLogger(__name__)

OPENROUTER = "openrouter"
SYNC_EVERY = timedelta(days=1)
CLAIM_FOR = timedelta(minutes=10)


class ProviderSync(PeriodicJob):
    name = "provider_sync"

    def __init__(
        self,
        db: Database,
        ingest: IngestService,
        base_url: str,
        batch_events: int,
        poll_seconds: float,
        job_reports: dict[str, dict[str, Any]] | None,
    ) -> None:
        super().__init__(poll_seconds, job_reports)
        self.db = db
        self.ingest = ingest
        self.base_url = base_url
        self.batch_events = batch_events

    def client(self, api_key: str) -> OpenRouterClient:
        return OpenRouterClient(self.base_url, api_key)

    async def work(self) -> dict[str, Any]:
        return {"synced": await self.sync_due()}

    async def sync_due(self, now: datetime | None = None) -> int:
        """Sync every connection not synced for a day; how many this replica synced."""
        now = now or clock.now()
        t = provider_connections.c
        async with self.db.read() as conn:
            due = (
                await conn.execute(
                    select(t.workspace_id, t.provider).where(
                        or_(t.last_sync_at.is_(None), t.last_sync_at <= now - SYNC_EVERY)
                    )
                )
            ).all()
        count = 0
        for workspace_id, provider in due:
            if await self.sync(workspace_id, provider, now, scheduled=True) is not None:
                count += 1
        return count

    async def sync(
        self, workspace_id: int, provider: str, now: datetime | None = None, scheduled: bool = False
    ) -> dict[str, Any] | None:
        """Claim and sync one connection; its new state, or None when it is absent or another
        replica holds it (or, scheduled, another replica synced it meanwhile)."""
        now = now or clock.now()
        t = provider_connections.c
        mine = and_(t.workspace_id == workspace_id, t.provider == provider)
        free = or_(t.claimed_until.is_(None), t.claimed_until < now)
        if scheduled:
            free = and_(free, or_(t.last_sync_at.is_(None), t.last_sync_at <= now - SYNC_EVERY))
        async with self.db.write() as conn:
            claimed = await conn.execute(
                update(provider_connections).where(mine, free).values(claimed_until=now + CLAIM_FOR)
            )
            if claimed.rowcount != 1:
                return None
            api_key = (await conn.execute(select(t.api_key).where(mine))).scalar_one()
        status, error, result = "succeeded", None, None
        try:
            body = await self.client(api_key).activity()
            result = await import_activity(
                self.db, self.ingest, workspace_id, body, self.batch_events
            )
        except (ProviderError, ImportRefused) as exc:
            status, error = "failed", str(exc)
        except (WriterBusy, WriterStopped, WriterFailed) as exc:
            status, error = (
                "failed",
                f"storing failed ({type(exc).__name__}); the next sync retries",
            )
        values: dict[str, Any] = {
            "last_sync_at": clock.now(),
            "last_sync_status": status,
            "last_error": error,
            "last_result": None
            if result is None
            else {k: v for k, v in result.items() if k != "errors"},
            "claimed_until": None,
        }
        async with self.db.write() as conn:
            await conn.execute(update(provider_connections).where(mine).values(**values))
            await record_audit(
                conn,
                AuditRecord(
                    workspace_id=workspace_id,
                    action="execute",
                    resource_type="provider_sync",
                    resource_id=provider,
                    outcome="success" if error is None else "failure",
                    details={"error": error, **(values["last_result"] or {})},
                ),
            )
        return values


async def connect(
    db: Database, workspace_id: int, provider: str, api_key: str, actor: Actor
) -> None:
    """Store the connection's key (replacing any earlier one), audited in the same
    transaction."""
    now = clock.now()
    t = provider_connections
    async with db.write() as conn:
        await conn.execute(
            delete(t).where(t.c.workspace_id == workspace_id, t.c.provider == provider)
        )
        await conn.execute(
            t.insert().values(
                workspace_id=workspace_id,
                provider=provider,
                api_key=api_key,
                created_at=now,
                updated_at=now,
            )
        )
        await audit_change(conn, workspace_id, "create", "provider_connection", provider, actor, {})


async def disconnect(db: Database, workspace_id: int, provider: str, actor: Actor) -> bool:
    """Forget the connection's key (audited); False when there was none."""
    t = provider_connections
    async with db.write() as conn:
        gone = await conn.execute(
            delete(t).where(t.c.workspace_id == workspace_id, t.c.provider == provider)
        )
        if not gone.rowcount:
            return False
        await audit_change(conn, workspace_id, "delete", "provider_connection", provider, actor, {})
    return True


async def connection(db: Database, workspace_id: int, provider: str) -> dict[str, Any] | None:
    t = provider_connections
    async with db.read() as conn:
        row = (
            (
                await conn.execute(
                    select(t).where(t.c.workspace_id == workspace_id, t.c.provider == provider)
                )
            )
            .mappings()
            .first()
        )
    return dict(row) if row else None
