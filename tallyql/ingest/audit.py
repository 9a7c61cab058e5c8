"""Audit events from outside (POST /v1/audit-events, GraphQL recordAuditEvents): checked one
by one, stored in one transaction, idempotent by id (a retry reports duplicates)."""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson

from tallyql.clock import clock
from tallyql.ingest.fields import MAX_METADATA_BYTES
from tallyql.ingest.json_values import json_problem, text_problem
from tallyql.ingest.validate import MAX_FUTURE, FieldError, IngestResult
from tallyql.storage.audit import ACTIONS, ACTOR_TYPES, OUTCOMES, AuditRecord, insert_audit_records
from tallyql.storage.database import Database
from tallyql.storage.types import parse_timestamp

TEXT_LIMITS = {"id": 128, "actor_id": 256, "resource_type": 128, "resource_id": 256}
CHOICES = {"actor_type": ACTOR_TYPES, "action": ACTIONS, "outcome": OUTCOMES}
REQUIRED = ("actor_type", "action", "resource_type")
KNOWN = frozenset({*TEXT_LIMITS, *CHOICES, "timestamp", "source_ip", "details"})


def _value(name: str, value: Any, now: datetime) -> Any:
    """The stored form of one field; ValueError with the message for the caller."""
    if name in TEXT_LIMITS:
        if not isinstance(value, str) or not value:
            raise ValueError("must be a non-empty string")
        if len(value) > TEXT_LIMITS[name]:
            raise ValueError(f"must be at most {TEXT_LIMITS[name]} characters")
        problem = text_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value
    if name in CHOICES:
        if value not in CHOICES[name]:
            raise ValueError("must be one of " + ", ".join(CHOICES[name]))
        return value
    if name == "timestamp":
        ts = parse_timestamp(value)
        if ts > now + MAX_FUTURE:
            raise ValueError("is more than 24 hours in the future")
        return ts
    if name == "source_ip":
        if not isinstance(value, str):
            raise ValueError("must be an IPv4 or IPv6 address")
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            raise ValueError("must be an IPv4 or IPv6 address") from None
    if not isinstance(value, dict):  # details
        raise ValueError("must be a JSON object")
    problem = json_problem(value)
    if problem is not None:
        raise ValueError(problem)
    if len(orjson.dumps(value)) > MAX_METADATA_BYTES:
        raise ValueError(f"must encode to at most {MAX_METADATA_BYTES} bytes")
    return value


def validate_audit_event(
    raw: Any, index: int, workspace_id: int, now: datetime
) -> AuditRecord | list[FieldError]:
    if not isinstance(raw, dict):
        return [FieldError(index, "", "audit event must be a JSON object")]
    errors: list[FieldError] = []
    values: dict[str, Any] = {}
    for name, value in raw.items():
        if name not in KNOWN:
            errors.append(
                FieldError(index, name[:128], "unknown field; put extra facts in details")
            )
        elif value is not None:
            try:
                values[name] = _value(name, value, now)
            except ValueError as exc:
                errors.append(FieldError(index, name, str(exc)))
    for name in REQUIRED:
        if name not in values and not any(e.field == name for e in errors):
            errors.append(FieldError(index, name, "is required"))
    if errors:
        return errors
    return AuditRecord(
        workspace_id=workspace_id,
        id=values.get("id") or uuid.uuid4().hex,
        ts=values.get("timestamp", now),
        actor_id=values.get("actor_id"),
        actor_type=values["actor_type"],
        action=values["action"],
        resource_type=values["resource_type"],
        resource_id=values.get("resource_id"),
        source_ip=values.get("source_ip"),
        outcome=values.get("outcome", "success"),
        details=values.get("details", {}),
    )


async def ingest_audit_events(
    db: Database,
    workspace_id: int,
    raw_events: Sequence[Any],
    earlier_errors: Sequence[FieldError] = (),
) -> IngestResult:
    """Store the valid audit events (returns after commit); `earlier_errors` come from
    parsing the body (their items are `None`)."""
    now = clock.now()
    bad = {e.index for e in earlier_errors}
    errors = list(earlier_errors)
    valid: list[AuditRecord] = []
    for index, raw in enumerate(raw_events):
        if index in bad:
            continue
        checked = validate_audit_event(raw, index, workspace_id, now)
        if isinstance(checked, list):
            errors.extend(checked)
        else:
            valid.append(checked)
    unique: list[AuditRecord] = []
    seen: set[str | None] = set()
    for record in valid:  # the same id twice in one call: the first counts, the rest repeat it
        if record.id not in seen:
            seen.add(record.id)
            unique.append(record)
    new: set[str] = set()
    if unique:
        async with db.write() as conn:
            new = await insert_audit_records(conn, unique)
    accepted = sum(1 for r in unique if r.id in new)
    return IngestResult(
        accepted=accepted,
        duplicates=len(valid) - accepted,
        rejected=len({e.index for e in errors}),
        errors=sorted(errors, key=lambda e: e.index),
    )
