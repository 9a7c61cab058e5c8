"""Checks one raw event against the contract in `fields.py` and normalises it.

The result is a record for the events table (its values in `EVENT_COLUMNS` order) plus the
payloads, or a list of errors naming the field and what is wrong with it. This is the detailed
path, which reports every error; `fastpath.py` makes the same records from msgspec structs.
The workspace, the time of receipt and the cost are set afterwards (`service.py`,
`pricing.py`), once the event is known to be valid.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson

from tallyql import sketch
from tallyql.ingest.fields import (
    FIELDS_BY_NAME,
    MAX_METADATA_BYTES,
    MAX_TAGS,
    EventField,
    FieldType,
)
from tallyql.ingest.json_values import json_problem, text_problem
from tallyql.ingest.status import derive_status
from tallyql.storage.ingest.record import ValidEvent
from tallyql.storage.tables import EVENT_COLUMNS
from tallyql.storage.types import parse_timestamp

MAX_FUTURE = timedelta(days=1)
_TEXT_TRUNCATED = frozenset({"error_message", "policy_description"})


@dataclass(frozen=True, slots=True)
class FieldError:
    index: int
    field: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "field": self.field, "message": self.message}


@dataclass
class IngestResult:
    """The answer of an ingest call: counts and the per-item errors."""

    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    errors: list[FieldError] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "errors": [e.as_dict() for e in self.errors],
        }


_COLUMN_DEFAULTS: dict[str, Any] = {
    "kind": "llm_call",
    "status": None,
    "status_code": None,
    "error_type": None,
    "error_message": None,
    "policy_id": None,
    "policy_name": None,
    "policy_description": None,
    "user_id": None,
    "api_key_id": None,
    "caller_ip": None,
    "agent_id": None,
    "agent_instance_id": None,
    "session_id": None,
    "trace_id": None,
    "parent_id": None,
    "run_id": None,
    "node": None,
    "provider": None,
    "model": None,
    "tool": None,
    "mcp_server": None,
    "gateway": None,
    "protocol": None,
    "request_type": None,
    "billing_mode": None,
    "is_byok": False,
    "input_tokens": 0,
    "output_tokens": 0,
    "cache_read_tokens": 0,
    "cache_write_tokens": 0,
    "reasoning_tokens": 0,
    "latency_ms": None,
    "ttft_ms": None,
    "request_bytes": None,
    "response_bytes": None,
    "tags": [],
    "metadata": {},
}


def check_moment(ts: datetime, now: datetime, oldest: datetime | None) -> None:
    """ValueError when an event's time is outside what ingest accepts: at most `MAX_FUTURE`
    ahead of `now`, and not before `oldest` (older events would need storage, partitions on
    PostgreSQL, for days that retention is about to purge)."""
    if ts > now + MAX_FUTURE:
        raise ValueError("is more than 24 hours in the future")
    if oldest is not None and ts < oldest:
        raise ValueError(
            f"is before {oldest.strftime('%Y-%m-%dT%H:%M:%SZ')}, the oldest time accepted "
            "(TALLYQL_MAX_EVENT_AGE_DAYS)"
        )


def _check(spec: EventField, value: Any) -> Any:
    """The stored form of one field value; raises ValueError with the message for the caller."""
    ftype = spec.type
    if ftype is FieldType.TEXT:
        if not isinstance(value, str):
            raise ValueError("must be a string")
        problem = text_problem(value)
        if problem is not None:
            raise ValueError(problem)
        if len(value) > spec.max_length:
            if spec.name in _TEXT_TRUNCATED:
                return value[: spec.max_length]
            raise ValueError(f"must be at most {spec.max_length} characters")
        return value or None
    if ftype is FieldType.ENUM:
        if value not in spec.choices:
            raise ValueError("must be one of " + ", ".join(spec.choices))
        return value
    if ftype is FieldType.INT:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise ValueError(f"must be an integer from 0 to {spec.maximum:,.0f}")
        if value < 0 or value > spec.maximum:
            raise ValueError(f"must be an integer from 0 to {spec.maximum:,.0f}")
        return value
    if ftype is FieldType.NUMBER:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"must be a number from 0 to {spec.maximum:,.0f}")
        if not 0 <= value <= spec.maximum:  # NaN fails both comparisons
            raise ValueError(f"must be a number from 0 to {spec.maximum:,.0f}")
        return float(value)
    if ftype is FieldType.BOOL:
        if not isinstance(value, bool):
            raise ValueError("must be true or false")
        return value
    if ftype is FieldType.TAGS:
        if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
            raise ValueError("must be a list of strings")
        if len(value) > MAX_TAGS:
            raise ValueError(f"must hold at most {MAX_TAGS} tags")
        if any(len(t) > 128 or not t for t in value):
            raise ValueError("each tag must be 1 to 128 characters")
        for tag in value:
            problem = text_problem(tag)
            if problem is not None:
                raise ValueError(f"each tag {problem}")
        return sorted(set(value))
    if ftype is FieldType.OBJECT:
        if not isinstance(value, dict):
            raise ValueError("must be a JSON object")
        problem = json_problem(value)
        if problem is not None:
            raise ValueError(problem)
        if len(orjson.dumps(value)) > MAX_METADATA_BYTES:
            raise ValueError(f"must encode to at most {MAX_METADATA_BYTES} bytes")
        return value
    if ftype is FieldType.PAYLOAD:
        problem = json_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value
    raise AssertionError(f"unhandled field type {ftype}")  # pragma: no cover


def validate_event(
    raw: Any, index: int, now: datetime, oldest: datetime | None = None
) -> ValidEvent | list[FieldError]:
    """Check one raw (snake_case) event; the normalised event or every error found. Events
    timed before `oldest` are refused (None: no lower bound)."""
    if not isinstance(raw, dict):
        return [FieldError(index, "", "event must be a JSON object")]
    errors: list[FieldError] = []
    row = dict(_COLUMN_DEFAULTS)
    event = ValidEvent(index=index, record=[])
    event_id: str | None = None
    ts: datetime | None = None
    for name, value in raw.items():
        spec = FIELDS_BY_NAME.get(name)
        if spec is None:
            errors.append(
                FieldError(
                    index, _field_name(name), "unknown field; put custom attributes in metadata"
                )
            )
            continue
        if value is None:
            continue
        try:
            if spec.type is FieldType.TIMESTAMP:
                ts = parse_timestamp(value)
                check_moment(ts, now, oldest)
            elif spec.type is FieldType.PAYLOAD:
                setattr(event, name, _check(spec, value))
                event.has_payload = True
            elif name == "id":
                event_id = _check(spec, value)
            elif name == "cost_usd":
                event.cost_usd = _check(spec, value)
            elif name == "token_accounting":
                event.token_accounting = _check(spec, value)
            else:
                row[name] = _check(spec, value)
        except ValueError as exc:
            errors.append(FieldError(index, name, str(exc)))
    if errors:
        return errors
    _normalise_tokens(row, event.token_accounting, index, errors)
    if errors:
        return errors
    status_error = _normalise_status(row, index)
    if status_error:
        return [status_error]
    row["id"] = event_id or uuid.uuid4().hex
    row["ts"] = ts or now
    row["caller"] = row["api_key_id"] or (f"ip:{row['caller_ip']}" if row["caller_ip"] else None)
    row["latency_bucket"] = sketch.bucket_of(row["latency_ms"])
    row["ttft_bucket"] = sketch.bucket_of(row["ttft_ms"])
    event.record = [row.get(c) for c in EVENT_COLUMNS]
    return event


def _field_name(name: str) -> str:
    """An unknown field's name as the error repeats it: bounded, and storable text."""
    clipped = name[:128]
    return clipped if text_problem(clipped) is None else repr(clipped)[:128]


def _normalise_tokens(
    row: dict[str, Any], accounting: str, index: int, errors: list[FieldError]
) -> None:
    if accounting == "exclusive":
        row["input_tokens"] += row["cache_read_tokens"] + row["cache_write_tokens"]
        row["output_tokens"] += row["reasoning_tokens"]
        return
    if row["cache_read_tokens"] + row["cache_write_tokens"] > row["input_tokens"]:
        errors.append(
            FieldError(
                index,
                "cache_read_tokens",
                "cache_read_tokens + cache_write_tokens exceed input_tokens; input_tokens must "
                'include cached tokens, or set token_accounting to "exclusive"',
            )
        )
    if row["reasoning_tokens"] > row["output_tokens"]:
        errors.append(
            FieldError(
                index,
                "reasoning_tokens",
                "reasoning_tokens exceed output_tokens; output_tokens must include reasoning "
                'tokens, or set token_accounting to "exclusive"',
            )
        )


def _normalise_status(row: dict[str, Any], index: int) -> FieldError | None:
    derived = derive_status(row["status"], row["status_code"], row["error_type"])
    if derived is None:
        return FieldError(index, "error_type", 'needs status "error" or "blocked"')
    row["status"], row["error_type"] = derived
    return None
