"""Storing and reading audit events: idempotent inserts by id, and the newest-first list with
keyset cursors over (ts, id)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, func, literal, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from tallyql.clock import clock
from tallyql.storage import dialect as sqld
from tallyql.storage.audit import AuditRecord
from tallyql.storage.dialect import Dialect
from tallyql.storage.tables import audit_events


async def insert_audit_records(conn: AsyncConnection, records: Sequence[AuditRecord]) -> set[str]:
    """Insert records whose (workspace, id) is new, in the caller's transaction; returns the
    ids that went in (a record without an id gets a fresh one, so it is always new)."""
    if not records:
        return set()
    now = clock.now()
    rows = [
        {
            "workspace_id": r.workspace_id,
            "id": r.id or uuid.uuid4().hex,
            "ts": r.ts or now,
            "actor_id": r.actor_id,
            "actor_type": r.actor_type,
            "action": r.action,
            "resource_type": r.resource_type,
            "resource_id": r.resource_id,
            "source_ip": r.source_ip,
            "outcome": r.outcome,
            "details": r.details,
        }
        for r in records
    ]
    statement = sqld.insert_ignoring_duplicates(Dialect.of(conn), audit_events).returning(
        audit_events.c.id
    )
    result = await conn.execute(statement, rows)
    return set(result.scalars().all())


@dataclass(frozen=True)
class AuditFilterSpec:
    actors: tuple[str, ...] = ()
    actor_types: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()
    resource_types: tuple[str, ...] = ()
    resource_ids: tuple[str, ...] = ()
    source_ips: tuple[str, ...] = ()
    outcomes: tuple[str, ...] = ()


_COLUMNS = {
    "actors": audit_events.c.actor_id,
    "actor_types": audit_events.c.actor_type,
    "actions": audit_events.c.action,
    "resource_types": audit_events.c.resource_type,
    "resource_ids": audit_events.c.resource_id,
    "source_ips": audit_events.c.source_ip,
    "outcomes": audit_events.c.outcome,
}


def audit_conditions(
    workspace_id: int,
    start: datetime | None,
    end: datetime | None,
    spec: AuditFilterSpec,
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [audit_events.c.workspace_id == workspace_id]
    if start is not None:
        conditions.append(audit_events.c.ts >= start)
    if end is not None:
        conditions.append(audit_events.c.ts < end)
    for name, column in _COLUMNS.items():
        values = getattr(spec, name)
        if values:
            conditions.append(column.in_(list(values)))
    return conditions


async def list_audit_rows(
    conn: AsyncConnection,
    conditions: list[ColumnElement[bool]],
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Newest first; `after` is the (ts, id) of the last row of the previous page."""
    query: Select[Any] = select(audit_events).where(*conditions)
    if after is not None:
        ts, audit_id = after
        query = query.where(
            tuple_(audit_events.c.ts, audit_events.c.id)
            < tuple_(literal(ts, audit_events.c.ts.type), literal(audit_id, audit_events.c.id.type))
        )
    query = query.order_by(audit_events.c.ts.desc(), audit_events.c.id.desc()).limit(limit)
    return [dict(r) for r in (await conn.execute(query)).mappings()]


async def count_audit_rows(conn: AsyncConnection, conditions: list[ColumnElement[bool]]) -> int:
    query = select(func.count()).select_from(audit_events).where(*conditions)
    return int((await conn.execute(query)).scalar_one())
