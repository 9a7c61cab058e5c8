"""The audit trail: who did what to which resource, and how it ended.

- writing: `record_audit` (one record, in the caller's transaction), `audit_change` (an
  `Actor`'s action on a resource), `insert_audit_records` (idempotent by id);
- reading: the newest-first list with keyset cursors over (ts, id), filtered by an
  `AuditFilterSpec`;
- blocked calls: the writer step that records one audit event per new blocked event
  (`block_audit_statements`, below).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, func, literal, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from tallyql.clock import clock
from tallyql.storage import dialect as sqld
from tallyql.storage.dialect import Dialect, json_object_sql
from tallyql.storage.ingest.batch import OnlyIf
from tallyql.storage.tables import EVENT_COLUMNS, audit_events

ACTOR_TYPES = ("user", "api_key", "system")
ACTIONS = ("create", "update", "delete", "execute", "login", "export", "block")
OUTCOMES = ("success", "failure", "denied")


@dataclass(frozen=True)
class AuditRecord:
    workspace_id: int
    action: str
    resource_type: str
    actor_id: str | None = None
    actor_type: str = "system"
    resource_id: str | None = None
    source_ip: str | None = None
    outcome: str = "success"
    details: dict[str, Any] = field(default_factory=dict)
    ts: datetime | None = None
    id: str | None = None


@dataclass(frozen=True)
class Actor:
    """Who acts on a resource (changes a budget, alert rule, webhook or price; exports;
    imports)."""

    id: str | None
    type: str = "api_key"
    source_ip: str | None = None


def _row(record: AuditRecord, now: datetime) -> dict[str, Any]:
    """The audit_events row of a record (a record without an id gets a fresh one)."""
    return {
        "workspace_id": record.workspace_id,
        "id": record.id or uuid.uuid4().hex,
        "ts": record.ts or now,
        "actor_id": record.actor_id,
        "actor_type": record.actor_type,
        "action": record.action,
        "resource_type": record.resource_type,
        "resource_id": record.resource_id,
        "source_ip": record.source_ip,
        "outcome": record.outcome,
        "details": record.details,
    }


async def record_audit(conn: AsyncConnection, record: AuditRecord) -> str:
    """Write one audit event in the caller's transaction; returns its id."""
    row = _row(record, clock.now())
    await conn.execute(audit_events.insert().values(**row))
    return str(row["id"])


async def audit_change(
    conn: AsyncConnection,
    workspace_id: int,
    action: str,
    resource_type: str,
    resource_id: str,
    actor: Actor,
    details: dict[str, Any],
) -> None:
    """Record an action on a resource (a change, an export, an import) in the caller's
    transaction."""
    await record_audit(
        conn,
        AuditRecord(
            workspace_id=workspace_id,
            action=action,
            resource_type=resource_type,
            resource_id=resource_id,
            actor_id=actor.id,
            actor_type=actor.type,
            source_ip=actor.source_ip,
            details=details,
        ),
    )


async def insert_audit_records(conn: AsyncConnection, records: Sequence[AuditRecord]) -> set[str]:
    """Insert records whose (workspace, id) is new, in the caller's transaction; returns the
    ids that went in (a record without an id gets a fresh one, so it is always new)."""
    if not records:
        return set()
    now = clock.now()
    rows = [_row(r, now) for r in records]
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


# ---------------------------------------------------------------- blocked calls
# A blocked call leaves an audit trace: each new event with status `blocked` records an audit
# event `block` in the ingest transaction (a writer contributor, see `storage/ingest/writer.py`).
#
# The audit event's id is `block:<event id>`, and it is written from the batch's *new* events
# only, so a re-sent duplicate event records nothing more (and `ON CONFLICT DO NOTHING` keeps
# the insert idempotent even then). It reads:
# - actor: the event's user (`user`), else its API key (`api_key`), else nobody (`system`);
# - resource: the tool (`tool`, when the event names one), else the model (`model`), else the
#   event itself (`event`, its id);
# - outcome `denied`, the caller's IP as source, the time of the event;
# - details: the policy (`policy_id`, `policy_name`, `policy_description`), the event's id and
#   kind, and the MCP server of a tool (JSON null when absent).

BLOCK_ID_PREFIX = "block:"
_DETAILS = (
    ("policy_id", "policy_id"),
    ("policy_name", "policy_name"),
    ("policy_description", "policy_description"),
    ("event_id", "id"),
    ("kind", "kind"),
    ("mcp_server", "mcp_server"),
)


def _details(dialect: Dialect) -> str:
    """The details object; absent values are JSON nulls on both databases."""
    return json_object_sql(dialect, ", ".join(f"'{key}', {column}" for key, column in _DETAILS))


_STATUS = EVENT_COLUMNS.index("status")


def block_audit_statements(dialect: Dialect, source: str) -> list[OnlyIf]:
    """The writer step: one audit event per new blocked event of the batch in `source`, run
    only for a batch holding a blocked event."""
    sql = (
        "INSERT INTO audit_events (workspace_id, id, ts, actor_id, actor_type, action, "
        "resource_type, resource_id, source_ip, outcome, details) "
        f"SELECT workspace_id, '{BLOCK_ID_PREFIX}' || id, ts, COALESCE(user_id, api_key_id), "
        "CASE WHEN user_id IS NOT NULL THEN 'user' WHEN api_key_id IS NOT NULL THEN 'api_key' "
        "ELSE 'system' END, 'block', "
        "CASE WHEN tool IS NOT NULL THEN 'tool' WHEN model IS NOT NULL THEN 'model' "
        "ELSE 'event' END, COALESCE(tool, model, id), caller_ip, 'denied', "
        f"{_details(dialect)} FROM {source} WHERE status = 'blocked' "
        "ON CONFLICT DO NOTHING"
    )
    return [OnlyIf(sql, _STATUS, "blocked")]
