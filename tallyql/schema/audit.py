"""The audit trail: `auditEvents` (newest first, keyset cursors) and `recordAuditEvents`
(the GraphQL door of POST /v1/audit-events: same checks, idempotent by id)."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated, Any

import strawberry

from tallyql.auth.principal import Permission
from tallyql.engine.audit_trail import AuditSelection, audit_count, audit_page
from tallyql.ingest.audit import ingest_audit_events
from tallyql.schema.base.common import AfterArg, FirstArg, OptionalRangeArg, PageInfo
from tallyql.schema.base.context import TallyInfo
from tallyql.schema.base.errors import UserError
from tallyql.schema.base.scalars import JSON
from tallyql.storage.audit import (
    AuditFilterSpec,
)
from tallyql.storage.cursors import check_page_size
from tallyql.storage.database import Database

MAX_RECORD_PER_CALL = 10_000


@strawberry.enum(description="Who acted.")
class AuditActorType(Enum):
    USER = strawberry.enum_value("user", description="A person.")
    API_KEY = strawberry.enum_value("api_key", description="An API key (a program).")
    SYSTEM = strawberry.enum_value("system", description="tallyql itself.")


@strawberry.enum(description="What was done.")
class AuditAction(Enum):
    CREATE = strawberry.enum_value("create", description="Created a resource.")
    UPDATE = strawberry.enum_value("update", description="Changed a resource.")
    DELETE = strawberry.enum_value("delete", description="Deleted a resource.")
    EXECUTE = strawberry.enum_value("execute", description="Ran something (a tool, a job).")
    LOGIN = strawberry.enum_value("login", description="Signed in.")
    EXPORT = strawberry.enum_value("export", description="Exported data.")
    BLOCK = strawberry.enum_value("block", description="Blocked a call or an actor.")


@strawberry.enum(description="How it ended.")
class AuditOutcome(Enum):
    SUCCESS = strawberry.enum_value("success", description="It worked.")
    FAILURE = strawberry.enum_value("failure", description="It failed.")
    DENIED = strawberry.enum_value("denied", description="It was not allowed.")


@strawberry.type(description="Who did what to which resource, from where, and how it ended.")
class AuditEvent:
    id: strawberry.ID = strawberry.field(description="The audit event's id (unique per workspace).")
    timestamp: datetime = strawberry.field(description="When it happened.")
    actor_id: str | None = strawberry.field(
        description="Who acted (a user id, a key id); null for the system."
    )
    actor_type: AuditActorType = strawberry.field(description="What kind of actor.")
    action: AuditAction = strawberry.field(description="What was done.")
    resource_type: str = strawberry.field(
        description="The kind of resource acted on, e.g. api_key, budget."
    )
    resource_id: str | None = strawberry.field(description="The resource's id.")
    source_ip: str | None = strawberry.field(description="The actor's IP address.")
    outcome: AuditOutcome = strawberry.field(description="How it ended.")
    details: JSON = strawberry.field(description="More about it: a JSON object.")

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
    actor_types: list[AuditActorType] | None = strawberry.field(
        default=None, description="Any of these actor types."
    )
    actions: list[AuditAction] | None = strawberry.field(
        default=None, description="Any of these actions."
    )
    resource_types: list[str] | None = strawberry.field(
        default=None, description="Any of these resource types."
    )
    resource_ids: list[str] | None = strawberry.field(
        default=None, description="Any of these resource ids."
    )
    source_ips: list[str] | None = strawberry.field(
        default=None, description="Any of these source IP addresses."
    )
    outcomes: list[AuditOutcome] | None = strawberry.field(
        default=None, description="Any of these outcomes."
    )

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
    actor_type: AuditActorType = strawberry.field(description="What kind of actor.")
    action: AuditAction = strawberry.field(description="What was done.")
    resource_type: str = strawberry.field(description="The kind of resource acted on.")
    id: str | None = strawberry.field(
        default=None, description="Idempotency key, unique per workspace; generated if absent."
    )
    timestamp: datetime | None = strawberry.field(
        default=None, description="With offset; defaults to receive time."
    )
    actor_id: str | None = strawberry.field(default=None, description="Who acted.")
    resource_id: str | None = strawberry.field(default=None, description="The resource's id.")
    source_ip: str | None = strawberry.field(default=None, description="The actor's IP address.")
    outcome: AuditOutcome = strawberry.field(
        default=AuditOutcome.SUCCESS, description="How it ended (default SUCCESS)."
    )
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


@strawberry.type(description="What recordAuditEvents stored.")
class RecordAuditEventsPayload:
    accepted: int = strawberry.field(description="New audit events stored (count).")
    duplicates: int = strawberry.field(
        description="Audit events already stored under their id, left unchanged (count)."
    )
    rejected: int = strawberry.field(description="Invalid audit events, not stored (count).")
    user_errors: list[UserError] = strawberry.field(
        description="Why each rejected event was rejected."
    )


@strawberry.type(description="An audit event with its cursor.")
class AuditEventEdge:
    cursor: str = strawberry.field(description="Opaque; pass as `after` to page on from here.")
    node: AuditEvent = strawberry.field(description="The item.")


@strawberry.type(description="A page of the audit trail, newest first.")
class AuditEventConnection:
    edges: list[AuditEventEdge] = strawberry.field(
        description="This page's audit events with cursors."
    )
    page_info: PageInfo = strawberry.field(description="Whether more pages follow, and cursors.")
    _db: strawberry.Private[Database]
    _selection: strawberry.Private[AuditSelection]

    @strawberry.field(description="This page's audit events, without cursors.")
    def nodes(self) -> list[AuditEvent]:
        return [e.node for e in self.edges]

    @strawberry.field(
        description="Audit events matching the range and filter (counted on request)."
    )
    async def total_count(self) -> int:
        return await audit_count(self._db, self._selection)


@strawberry.type
class AuditQuery:
    @strawberry.field(description="The audit trail, newest first, with keyset cursors.")
    async def audit_events(
        self,
        info: TallyInfo,
        range: OptionalRangeArg = None,
        filter: Annotated[
            AuditFilter | None,
            strawberry.argument(description="Which audit events; null: all."),
        ] = None,
        first: FirstArg = 50,
        after: AfterArg = None,
    ) -> AuditEventConnection:
        principal = info.context.require(Permission.READ)
        check_page_size(first)
        window = range.resolve() if range is not None else None
        selection = AuditSelection(
            principal.workspace_id,
            window.start if window else None,
            window.end if window else None,
            filter.to_spec() if filter is not None else AuditFilterSpec(),
        )
        db = info.context.services.db
        page = await audit_page(db, selection, first, after)
        edges = [
            AuditEventEdge(cursor=c, node=AuditEvent.from_row(r))
            for c, r in zip(page.cursors, page.rows, strict=True)
        ]
        return AuditEventConnection(
            edges=edges,
            page_info=PageInfo.of(page.cursors, page.has_next_page, after),
            _db=db,
            _selection=selection,
        )


@strawberry.type
class AuditMutation:
    @strawberry.mutation(
        description="Store audit events; returns after commit. Retries are idempotent by id."
    )
    async def record_audit_events(
        self,
        info: TallyInfo,
        events: Annotated[
            list[AuditEventInput],
            strawberry.argument(description="The audit events to store (at most 10,000 per call)."),
        ],
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
