"""Who acts on a resource (changes a budget, alert rule or webhook; exports; imports), for the
audit trail."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from tallyql.storage.audit import AuditRecord, record_audit


@dataclass(frozen=True)
class Actor:
    id: str | None
    type: str = "api_key"
    source_ip: str | None = None


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
