"""The audit trail: who did what to which resource, and how it ended."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from tallyql.clock import clock
from tallyql.storage.tables import audit_events

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


async def record_audit(conn: AsyncConnection, record: AuditRecord) -> str:
    """Write one audit event in the caller's transaction; returns its id."""
    audit_id = record.id or uuid.uuid4().hex
    await conn.execute(
        audit_events.insert().values(
            workspace_id=record.workspace_id,
            id=audit_id,
            ts=record.ts or clock.now(),
            actor_id=record.actor_id,
            actor_type=record.actor_type,
            action=record.action,
            resource_type=record.resource_type,
            resource_id=record.resource_id,
            source_ip=record.source_ip,
            outcome=record.outcome,
            details=record.details,
        )
    )
    return audit_id
