"""Turns an ingest request body into raw events: gzip, JSON array, {"events": [...]}, NDJSON.

A malformed NDJSON line is an error for that line's event only; the other lines are kept.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

import orjson

from tallyql.ingest.validate import FieldError

NDJSON_TYPES = (
    "application/x-ndjson",
    "application/ndjson",
    "application/jsonl",
    "application/x-jsonl",
)


class BodyError(Exception):
    """The body as a whole cannot be read (HTTP 400, or 413 when too large)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class ParsedBody:
    events: list[Any]
    """Raw events in body order; `None` marks a line that was not valid JSON."""
    errors: list[FieldError] = field(default_factory=list)


def decompress(body: bytes, content_encoding: str | None, limit: int) -> bytes:
    """The body, gunzipped when it says (or looks) so, never larger than `limit` bytes."""
    encoding = (content_encoding or "").strip().lower()
    if encoding in ("", "identity") and not body.startswith(b"\x1f\x8b"):
        return body
    if encoding not in ("", "identity", "gzip", "x-gzip"):
        raise BodyError(f"unsupported Content-Encoding {content_encoding!r}; use gzip", 415)
    inflater = zlib.decompressobj(wbits=31)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise BodyError(f"body is not valid gzip: {exc}") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise BodyError(f"decompressed body exceeds {limit} bytes", 413)
    if not inflater.eof:
        raise BodyError("body is not valid gzip: the stream is truncated")
    return out


def parse_events(body: bytes, content_type: str | None, max_events: int) -> ParsedBody:
    media = (content_type or "").split(";")[0].strip().lower()
    if media in NDJSON_TYPES:
        parsed = _ndjson(body)
    else:
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            if _looks_like_ndjson(body):
                parsed = _ndjson(body)
            else:
                raise BodyError(f"body is not valid JSON: {exc}") from None
        else:
            parsed = ParsedBody(_events_of(doc))
    if len(parsed.events) > max_events:
        raise BodyError(
            f"{len(parsed.events)} events in one call; send at most {max_events} per call", 413
        )
    return parsed


def _looks_like_ndjson(body: bytes) -> bool:
    """Several lines, the first of them a JSON object on its own (not a broken JSON document
    that happens to span lines, which is a 400)."""
    stripped = body.strip()
    if b"\n" not in stripped:
        return False
    first = stripped.split(b"\n", 1)[0]
    try:
        return isinstance(orjson.loads(first), dict)
    except orjson.JSONDecodeError:
        return False


def _events_of(doc: Any) -> list[Any]:
    if isinstance(doc, list):
        return doc
    if isinstance(doc, dict):
        if "events" in doc:
            events = doc["events"]
            if not isinstance(events, list):
                raise BodyError('"events" must be a JSON array of events')
            return events
        return [doc]
    raise BodyError('body must be a JSON array of events, {"events": [...]}, or NDJSON')


def _ndjson(body: bytes) -> ParsedBody:
    parsed = ParsedBody([])
    for line in body.split(b"\n"):
        if not line.strip():
            continue
        index = len(parsed.events)
        try:
            parsed.events.append(orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            parsed.events.append(None)
            parsed.errors.append(FieldError(index, "", f"line is not valid JSON: {exc}"))
    return parsed
