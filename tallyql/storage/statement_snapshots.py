"""Issued chargeback statements (the `statement_snapshots` table) and the repricings since.

A closed period's statement is kept as first issued; a new version is written only when
prices were re-applied to the period's events afterwards. Versions are inserted with "insert,
ignore a conflict", so two replicas issuing the same statement at once keep one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from tallyql.storage.dialect import Dialect, insert_ignoring_duplicates
from tallyql.storage.tables import audit_events, statement_snapshots


@dataclass(frozen=True)
class Snapshot:
    version: int
    issued_at: datetime
    reason: str | None
    body: dict[str, Any]


@dataclass(frozen=True)
class SnapshotKey:
    workspace_id: int
    period: str
    period_start: str
    timezone: str

    def where(self) -> Any:
        t = statement_snapshots.c
        return and_(
            t.workspace_id == self.workspace_id,
            t.period == self.period,
            t.period_start == self.period_start,
            t.timezone == self.timezone,
        )


async def latest(conn: AsyncConnection, key: SnapshotKey) -> Snapshot | None:
    t = statement_snapshots.c
    row = (
        await conn.execute(
            select(t.version, t.issued_at, t.reason, t.body)
            .where(key.where())
            .order_by(t.version.desc())
            .limit(1)
        )
    ).first()
    return None if row is None else Snapshot(row.version, row.issued_at, row.reason, row.body)


async def issue(conn: AsyncConnection, key: SnapshotKey, snapshot: Snapshot) -> None:
    """Store a version unless another writer stored the same version first."""
    values = {
        "workspace_id": key.workspace_id,
        "period": key.period,
        "period_start": key.period_start,
        "timezone": key.timezone,
        "version": snapshot.version,
        "issued_at": snapshot.issued_at,
        "reason": snapshot.reason,
        "body": snapshot.body,
    }
    statement = insert_ignoring_duplicates(Dialect.of(conn), statement_snapshots)
    await conn.execute(statement.values(**values))


@dataclass(frozen=True)
class Repricing:
    audit_id: str
    at: datetime
    changed: int


async def repricings_since(
    conn: AsyncConnection, workspace_id: int, since: datetime, start: datetime, end: datetime
) -> list[Repricing]:
    """Repricings recorded after `since` whose window met [start, end) and changed a cost,
    oldest first (from the audit trail, where `repriceEvents` records each run)."""
    t = audit_events.c
    rows = await conn.execute(
        select(t.id, t.ts, t.details)
        .where(
            t.workspace_id == workspace_id,
            t.resource_type == "reprice",
            t.outcome == "success",
            t.ts > since,
        )
        .order_by(t.ts, t.id)
    )
    found = []
    for audit_id, ts, details in rows:
        try:
            lo = datetime.fromisoformat(details["start"])
            hi = datetime.fromisoformat(details["end"])
            changed = int(details.get("changed") or 0)
        except (KeyError, TypeError, ValueError):
            continue  # not a record repriceEvents wrote
        if changed and lo < end and hi > start:
            found.append(Repricing(audit_id, ts, changed))
    return found
