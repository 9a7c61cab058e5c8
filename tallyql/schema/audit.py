"""The audit trail: `auditEvents` (newest first, keyset cursors) and `recordAuditEvents`
(the GraphQL door of POST /v1/audit-events: same checks, idempotent by id)."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

import strawberry

from tallyql.auth.principal import Permission
from tallyql.engine.cursors import CursorError, check_page_size, decode_cursor, encode_cursor
from tallyql.ingest.audit import ingest_audit_events
from tallyql.schema.common import PageInfo, TimeRangeInput
from tallyql.schema.context import TallyInfo
from tallyql.schema.ingest import UserError
from tallyql.schema.scalars import JSON
from tallyql.storage.audit_store import (
    AuditFilterSpec,
    audit_conditions,
    count_audit_rows,
    list_audit_rows,
)
from tallyql.storage.database import Database
from tallyql.storage.types import from_micros, to_micros

MAX_RECORD_PER_CALL = 10_000


@strawberry.enum(description="Who acted.")
class AuditActorType(Enum):
    USER = "user"
    API_KEY = "api_key"
    SYSTEM = "system"


@strawberry.enum(description="What was done.")
class AuditAction(Enum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    EXECUTE = "execute"
    LOGIN = "login"
    EXPORT = "export"
    BLOCK = "block"


@strawberry.enum(description="How it ended.")
class AuditOutcome(Enum):
    SUCCESS = "success"
    FAILURE = "failure"
    DENIED = "denied"


@strawberry.type(description="Who did what to which resource, from where, and how it ended.")
class AuditEvent:
    id: strawberry.ID
    timestamp: datetime
    actor_id: str | None
    actor_type: AuditActorType
    action: AuditAction
    resource_type: str
    resource_id: str | None
    source_ip: str | None
    outcome: AuditOutcome
    details: JSON

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> AuditEvent:
        return cls(
            id=strawberry.ID(row["id"]),
            timestamp=row["ts"],
            actor_id=row["actor_id"],
            actor_type=AuditActorType(row["actor_type"]),
            action=AuditAction(row["action"]),
            resource_type=row["resource_type"],
            resource_id=row["resource_id"],
            source_ip=row["source_ip"],
            outcome=AuditOutcome(row["outcome"]),
            details=row["details"],
        )


@strawberry.input(description="Lists mean any of; fields combine with AND.")
class AuditFilter:
    actors: list[str] | None = strawberry.field(default=None, description="Actor ids.")
    actor_types: list[AuditActorType] | None = None
    actions: list[AuditAction] | None = None
    resource_types: list[str] | None = None
    resource_ids: list[str] | None = None
    source_ips: list[str] | None = None
    outcomes: list[AuditOutcome] | None = None

    def to_spec(self) -> AuditFilterSpec:
        def values(items: list[Any] | None) -> tuple[str, ...]:
            return tuple(i.value if isinstance(i, Enum) else i for i in items or ())

        return AuditFilterSpec(
            actors=values(self.actors),
            actor_types=values(self.actor_types),
            actions=values(self.actions),
            resource_types=values(self.resource_types),
            resource_ids=values(self.resource_ids),
            source_ips=values(self.source_ips),
            outcomes=values(self.outcomes),
        )


@strawberry.input(description="An audit event; the same fields as POST /v1/audit-events.")
class AuditEventInput:
    actor_type: AuditActorType
    action: AuditAction
    resource_type: str
    id: str | None = strawberry.field(
        default=None, description="Idempotency key, unique per workspace; generated if absent."
    )
    timestamp: datetime | None = strawberry.field(
        default=None, description="With offset; defaults to receive time."
    )
    actor_id: str | None = None
    resource_id: str | None = None
    source_ip: str | None = None
    outcome: AuditOutcome = AuditOutcome.SUCCESS
    details: JSON | None = strawberry.field(default=None, description="A JSON object.")

    def to_raw(self) -> dict[str, Any]:
        """The REST (snake_case) form, for the shared validator."""
        raw: dict[str, Any] = {
            "actor_type": self.actor_type.value,
            "action": self.action.value,
            "resource_type": self.resource_type,
            "outcome": self.outcome.value,
        }
        for name in ("id", "actor_id", "resource_id", "source_ip", "details"):
            value = getattr(self, name)
            if value is not None:
                raw[name] = value
        if self.timestamp is not None:
            raw["timestamp"] = self.timestamp.isoformat()
        return raw


@strawberry.type
class RecordAuditEventsPayload:
    accepted: int
    duplicates: int
    rejected: int
    user_errors: list[UserError]


def _decode_after(cursor: str) -> tuple[datetime, str]:
    ts, audit_id = decode_cursor("aud", cursor, 2)
    if isinstance(ts, bool) or not isinstance(ts, int) or not isinstance(audit_id, str):
        raise CursorError("invalid cursor")
    try:
        return from_micros(ts), audit_id
    except OverflowError:
        raise CursorError("invalid cursor") from None


@strawberry.type
class AuditEventEdge:
    cursor: str
    node: AuditEvent


@strawberry.type(description="A page of the audit trail, newest first.")
class AuditEventConnection:
    edges: list[AuditEventEdge]
    page_info: PageInfo
    _db: strawberry.Private[Database]
    _conditions: strawberry.Private[list[Any]]

    @strawberry.field
    def nodes(self) -> list[AuditEvent]:
        return [e.node for e in self.edges]

    @strawberry.field(
        description="Audit events matching the range and filter (counted on request)."
    )
    async def total_count(self) -> int:
        async with self._db.read() as conn:
            return await count_audit_rows(conn, self._conditions)


@strawberry.type
class AuditQuery:
    @strawberry.field(description="The audit trail, newest first, with keyset cursors.")
    async def audit_events(
        self,
        info: TallyInfo,
        range: TimeRangeInput | None = None,
        filter: AuditFilter | None = None,
        first: int = 50,
        after: str | None = None,
    ) -> AuditEventConnection:
        principal = info.context.require(Permission.READ)
        check_page_size(first)
        window = range.resolve() if range is not None else None
        spec = filter.to_spec() if filter is not None else AuditFilterSpec()
        conditions = audit_conditions(
            principal.workspace_id,
            window.start if window else None,
            window.end if window else None,
            spec,
        )
        position = _decode_after(after) if after else None
        db = info.context.services.db
        async with db.read() as conn:
            rows = await list_audit_rows(conn, conditions, position, first + 1)
        edges = [
            AuditEventEdge(
                cursor=encode_cursor("aud", to_micros(r["ts"]), r["id"]),
                node=AuditEvent.from_row(r),
            )
            for r in rows[:first]
        ]
        return AuditEventConnection(
            edges=edges,
            page_info=PageInfo.of([e.cursor for e in edges], len(rows) > first, after),
            _db=db,
            _conditions=conditions,
        )


@strawberry.type
class AuditMutation:
    @strawberry.mutation(
        description="Store audit events; returns after commit. Retries are idempotent by id."
    )
    async def record_audit_events(
        self, info: TallyInfo, events: list[AuditEventInput]
    ) -> RecordAuditEventsPayload:
        principal = info.context.require(Permission.INGEST)
        if len(events) > MAX_RECORD_PER_CALL:
            message = f"send at most {MAX_RECORD_PER_CALL} per call"
            return RecordAuditEventsPayload(
                accepted=0,
                duplicates=0,
                rejected=len(events),
                user_errors=[UserError(field="events", message=message, code="TOO_MANY")],
            )
        result = await ingest_audit_events(
            info.context.services.db, principal.workspace_id, [e.to_raw() for e in events]
        )
        return RecordAuditEventsPayload(
            accepted=result.accepted,
            duplicates=result.duplicates,
            rejected=result.rejected,
            user_errors=[
                UserError(field=_camel(e.field), message=e.message, code="INVALID", index=e.index)
                for e in result.errors
            ],
        )


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)
