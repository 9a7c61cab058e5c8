"""Reads and writes `price_overrides`; every change is audited in the same transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update

from tallyql.clock import clock
from tallyql.costs.overrides import PriceOverride
from tallyql.storage.audit import AuditRecord, record_audit
from tallyql.storage.cost_tables import price_overrides
from tallyql.storage.database import Database

EDITABLE = (
    "provider",
    "model",
    "model_match",
    "effective_from",
    "effective_until",
    "input_mtok",
    "output_mtok",
    "cache_read_mtok",
    "cache_write_mtok",
    "reasoning_mtok",
    "description",
)


@dataclass(frozen=True)
class Actor:
    """Who makes a change, for the audit trail."""

    id: str | None
    type: str = "api_key"
    source_ip: str | None = None


def _audit_values(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in values.items()}


async def list_overrides(db: Database, workspace_id: int | None = None) -> list[PriceOverride]:
    """A workspace's overrides (every workspace's when None), oldest first."""
    query = select(price_overrides).order_by(
        price_overrides.c.workspace_id, price_overrides.c.created_at, price_overrides.c.id
    )
    if workspace_id is not None:
        query = query.where(price_overrides.c.workspace_id == workspace_id)
    async with db.read() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return [PriceOverride.from_row(r) for r in rows]


async def get_override(db: Database, workspace_id: int, override_id: str) -> PriceOverride | None:
    query = select(price_overrides).where(
        price_overrides.c.workspace_id == workspace_id, price_overrides.c.id == override_id
    )
    async with db.read() as conn:
        row = (await conn.execute(query)).mappings().first()
    return PriceOverride.from_row(row) if row is not None else None


async def create_override(
    db: Database, workspace_id: int, values: dict[str, Any], actor: Actor
) -> PriceOverride:
    now = clock.now()
    override_id = uuid.uuid4().hex
    row = {
        **{name: values.get(name) for name in EDITABLE},
        "workspace_id": workspace_id,
        "id": override_id,
        "created_at": now,
        "updated_at": now,
    }
    async with db.write() as conn:
        await conn.execute(price_overrides.insert().values(**row))
        await _audit(conn, workspace_id, "create", override_id, _audit_values(values), actor)
    return PriceOverride.from_row(row)


async def update_override(
    db: Database, workspace_id: int, override_id: str, changes: dict[str, Any], actor: Actor
) -> PriceOverride | None:
    """Apply `changes` (a subset of EDITABLE); None when there is no such override."""
    where = (price_overrides.c.workspace_id == workspace_id) & (price_overrides.c.id == override_id)
    async with db.write() as conn:
        found = (await conn.execute(select(price_overrides).where(where))).mappings().first()
        if found is None:
            return None
        values = {**changes, "updated_at": clock.now()}
        await conn.execute(update(price_overrides).where(where).values(**values))
        await _audit(conn, workspace_id, "update", override_id, _audit_values(changes), actor)
        row = (await conn.execute(select(price_overrides).where(where))).mappings().one()
    return PriceOverride.from_row(row)


async def delete_override(
    db: Database, workspace_id: int, override_id: str, actor: Actor
) -> PriceOverride | None:
    where = (price_overrides.c.workspace_id == workspace_id) & (price_overrides.c.id == override_id)
    async with db.write() as conn:
        found = (await conn.execute(select(price_overrides).where(where))).mappings().first()
        if found is None:
            return None
        await conn.execute(delete(price_overrides).where(where))
        removed = PriceOverride.from_row(found)
        details = _audit_values({k: getattr(removed, k) for k in EDITABLE})
        await _audit(conn, workspace_id, "delete", override_id, details, actor)
    return removed


async def _audit(
    conn: Any,
    workspace_id: int,
    action: str,
    override_id: str,
    details: dict[str, Any],
    actor: Actor,
) -> None:
    await record_audit(
        conn,
        AuditRecord(
            workspace_id=workspace_id,
            action=action,
            resource_type="price_override",
            resource_id=override_id,
            actor_id=actor.id,
            actor_type=actor.type,
            source_ip=actor.source_ip,
            details=details,
        ),
    )
