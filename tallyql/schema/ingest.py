"""`ingestEvents`: the GraphQL door onto the ingest pipeline.

`EventInput` is generated from the event contract (`ingest/fields.py`), so REST and GraphQL
accept the same fields (camelCase here) and run through the same validation.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated, Any

import strawberry

from tallyql.auth.principal import Permission
from tallyql.ingest.fields import EVENT_FIELDS, FieldType
from tallyql.schema.base.common import ErrorType, EventKind, EventStatus
from tallyql.schema.base.context import TallyInfo
from tallyql.schema.base.errors import UserError
from tallyql.schema.base.scalars import JSON
from tallyql.storage.ingest.writer import WriterBusy, WriterFailed, WriterStopped


@strawberry.enum(description="How an event counts cached and reasoning tokens.")
class TokenAccounting(Enum):
    INCLUSIVE = strawberry.enum_value(
        "inclusive",
        description="inputTokens includes cached tokens and outputTokens includes reasoning "
        "tokens.",
    )
    EXCLUSIVE = strawberry.enum_value(
        "exclusive",
        description="Anthropic style: cached and reasoning tokens are reported apart; tallyql "
        "adds them.",
    )


_ENUMS: dict[str, type[Enum]] = {
    "kind": EventKind,
    "status": EventStatus,
    "error_type": ErrorType,
    "token_accounting": TokenAccounting,
}
_PYTHON_TYPES: dict[FieldType, Any] = {
    FieldType.TEXT: str,
    FieldType.INT: int,
    FieldType.NUMBER: float,
    FieldType.BOOL: bool,
    FieldType.TIMESTAMP: datetime,
    FieldType.TAGS: list[str],
    FieldType.OBJECT: JSON,
    FieldType.PAYLOAD: JSON,
}


def _event_input() -> type:
    annotations: dict[str, Any] = {}
    namespace: dict[str, Any] = {"__annotations__": annotations}
    for spec in EVENT_FIELDS:
        py_type = _ENUMS[spec.name] if spec.type is FieldType.ENUM else _PYTHON_TYPES[spec.type]
        annotations[spec.name] = py_type | None
        namespace[spec.name] = strawberry.field(default=None, description=spec.doc)
    cls = type("EventInput", (), namespace)
    return strawberry.input(cls, description="One event; the same fields as POST /v1/events.")


EventInput = _event_input()


def event_input_to_raw(event: Any) -> dict[str, Any]:
    """The REST (snake_case) form of an EventInput, for the shared validator."""
    raw: dict[str, Any] = {}
    for spec in EVENT_FIELDS:
        value = getattr(event, spec.name)
        if value is None:
            continue
        if isinstance(value, Enum):
            value = value.value
        elif isinstance(value, datetime):
            value = value.isoformat()
        raw[spec.name] = value
    return raw


@strawberry.type(description="What ingestEvents stored.")
class IngestEventsPayload:
    accepted: int = strawberry.field(description="New events stored (count).")
    duplicates: int = strawberry.field(
        description="Events already stored under their id, left unchanged (count)."
    )
    rejected: int = strawberry.field(description="Invalid events, not stored (count).")
    user_errors: list[UserError] = strawberry.field(
        description="Why each rejected event was rejected."
    )


@strawberry.type
class IngestMutation:
    @strawberry.mutation(
        description="Store events; returns after they are committed. Retries are idempotent by id."
    )
    async def ingest_events(
        self,
        info: TallyInfo,
        events: Annotated[
            # unchecked below: EventInput is a class built at import from EVENT_FIELDS
            list[EventInput],  # type: ignore[valid-type]
            strawberry.argument(
                description="The events to store (at most TALLYQL_MAX_BATCH_EVENTS per call)."
            ),
        ],
    ) -> IngestEventsPayload:
        principal = info.context.require(Permission.INGEST)
        services = info.context.services
        if len(events) > services.settings.max_batch_events:
            return IngestEventsPayload(
                accepted=0,
                duplicates=0,
                rejected=len(events),
                user_errors=[
                    UserError(
                        field="events",
                        message=f"send at most {services.settings.max_batch_events} per call",
                        code="TOO_MANY_EVENTS",
                    )
                ],
            )
        raw = [event_input_to_raw(e) for e in events]
        try:
            result = await services.ingest.ingest(principal.workspace_id, raw)
        except (WriterBusy, WriterStopped, WriterFailed) as exc:
            code, message = {
                WriterBusy: ("BUSY", "the server is busy; nothing was stored, retry shortly"),
                WriterStopped: ("UNAVAILABLE", "the server is shutting down; retry"),
                WriterFailed: ("WRITE_FAILED", str(exc)),
            }[type(exc)]
            return IngestEventsPayload(
                accepted=0,
                duplicates=0,
                rejected=len(events),
                user_errors=[UserError(field="events", message=message, code=code)],
            )
        return IngestEventsPayload(
            accepted=result.accepted,
            duplicates=result.duplicates,
            rejected=result.rejected,
            user_errors=[
                UserError(
                    field=_camel(e.field), message=e.message, code="INVALID_EVENT", index=e.index
                )
                for e in result.errors
            ],
        )


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)
