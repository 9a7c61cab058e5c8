"""Turns an ingest request body into raw events: gzip, JSON array, {"events": [...]}, NDJSON.

A malformed NDJSON line is an error for that line's event only; the other lines are kept.

A parsed body costs far more memory than its bytes (an empty event, 3 bytes of JSON, is a
struct of hundreds of bytes), so a body is counted before any parser builds objects: its JSON
values with a few byte counts, its events exactly (stopping at the limit) when the byte counts
cannot rule out too many. Gzip is inflated as it arrives, stopping at the byte limit, and
every member of a multi-member stream is read.
"""

from __future__ import annotations

import json
import re
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


MAX_JSON_VALUES = 2_000_000
"""Most JSON values (objects, arrays, strings, numbers, ...) in one body: a parsed value costs
about 60 bytes, so this bounds a body's parsed size to about 120 MB whatever its shape."""


class Inflater:
    """Inflates a body chunk by chunk, never holding more than `limit` inflated bytes.

    gzip reads every member of a concatenated stream (as gzip itself does). deflate is the
    HTTP coding of RFC 9110: a zlib stream (RFC 1950); a raw deflate stream (RFC 1951), which
    some senders label deflate, is recognised by its missing zlib header and read too."""

    def __init__(self, limit: int, encoding: str = "gzip") -> None:
        self.limit = limit
        self.encoding = encoding
        self._out: list[bytes] = []
        self._size = 0
        self._member: Any = zlib.decompressobj(wbits=31) if encoding == "gzip" else None

    def _start_deflate(self, data: bytes) -> None:
        # a zlib header: compression method 8, and the two bytes a multiple of 31
        zlib_header = len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
        self._member = zlib.decompressobj(wbits=15 if zlib_header else -15)

    def feed(self, data: bytes) -> None:
        """Inflate more of the body; BodyError(413) past the limit, (400) when malformed."""
        if self._member is None:
            if not data:
                return
            self._start_deflate(data)
        while data:
            try:
                out = self._member.decompress(data, self.limit - self._size + 1)
            except zlib.error as exc:
                raise BodyError(f"body is not valid {self.encoding}: {exc}") from None
            self._size += len(out)
            if self._size > self.limit:
                raise BodyError(f"decompressed body exceeds {self.limit} bytes", 413)
            self._out.append(out)
            if self._member.unconsumed_tail:
                data = self._member.unconsumed_tail
            elif self._member.eof:
                # another member may follow (zero padding after the last one is tolerated)
                data = self._member.unused_data.lstrip(b"\x00")
                if data and self.encoding != "gzip":
                    raise BodyError("body is not valid deflate: data after the stream's end")
                if data:
                    self._member = zlib.decompressobj(wbits=31)
            else:
                data = b""

    def result(self) -> bytes:
        """The whole inflated body; BodyError(400) when the stream ends mid-member."""
        if self._member is None or not self._member.eof:
            raise BodyError(f"body is not valid {self.encoding}: the stream is truncated")
        return b"".join(self._out)


_ENCODINGS = {"gzip": "gzip", "x-gzip": "gzip", "deflate": "deflate"}


def compression(body: bytes, content_encoding: str | None) -> str | None:
    """How the body is to be inflated ("gzip", "deflate"), or None; BodyError(415) for an
    encoding not supported. A body without Content-Encoding that starts with gzip's magic
    bytes is gunzipped (some senders compress without saying so)."""
    encoding = (content_encoding or "").strip().lower()
    if encoding in ("", "identity"):
        return "gzip" if body.startswith(b"\x1f\x8b") else None
    if encoding not in _ENCODINGS:
        raise BodyError(
            f"unsupported Content-Encoding {content_encoding!r}; use gzip or deflate", 415
        )
    return _ENCODINGS[encoding]


def decompress(body: bytes, content_encoding: str | None, limit: int) -> bytes:
    """The body, inflated when it says (or, for gzip, looks) so, never larger than `limit`."""
    encoding = compression(body, content_encoding)
    if encoding is None:
        return body
    inflater = Inflater(limit, encoding)
    inflater.feed(body)
    return inflater.result()


_SCAN = json.JSONDecoder().scan_once
_BLANK = re.compile(r"[ \t\n\r]*")
_LINE = re.compile(rb"[^\s][^\n]*")


def check_json_values(body: bytes) -> None:
    """BodyError(413) when a JSON body holds more than `MAX_JSON_VALUES` values, found with
    byte counts: every value but the first follows a comma or opens a container, and takes
    two bytes with its separator, so a body under twice the bound needs no counting."""
    if len(body) >= 2 * MAX_JSON_VALUES:
        values = body.count(b",") + body.count(b"{") + body.count(b"[") + 1
        if values > MAX_JSON_VALUES:
            raise BodyError(
                f"body holds more than {MAX_JSON_VALUES:,} JSON values; send fewer events per call",
                413,
            )


def check_event_count(body: bytes, ndjson: bool, max_events: int) -> None:
    """BodyError(413) when a body holds more than `max_events` events or `MAX_JSON_VALUES`
    values, found before anything is parsed whole. Byte counts bound both: every value but
    the first follows a comma or opens a container, every event is an object or a line. Only
    when they cannot settle it are the events counted exactly, one at a time (in constant
    memory), up to the limit."""
    check_json_values(body)
    # "{}," is the smallest event: a body of fewer than three bytes per event allowed fits
    if len(body) < 3 * max_events:
        return
    if ndjson:
        too_many = body.count(b"\n") >= max_events and _count_lines(body, max_events) > max_events
    elif body.count(b"{") <= max_events:
        return  # the fast path's structs are objects; anything else fails it at once
    else:
        verdict = _count_json(body, max_events)
        too_many = verdict == _TOO_MANY or (
            verdict == _NDJSON and _count_lines(body, max_events) > max_events
        )
    if too_many:
        raise BodyError(
            f"more than {max_events} events in one call; send at most {max_events} per call", 413
        )


def _count_lines(body: bytes, limit: int) -> int:
    """Non-blank lines, counting no further than limit + 1."""
    count = 0
    for _ in _LINE.finditer(body):
        count += 1
        if count > limit:
            break
    return count


_FITS, _TOO_MANY, _NDJSON = "fits", "too many", "ndjson"


def _count_json(body: bytes, limit: int) -> str:
    """Whether a body is one JSON document (an array, or an object with "events") of at most
    `limit` events (_FITS), of more (_TOO_MANY), or several documents, NDJSON (_NDJSON).
    Invalid JSON fits: the parsers report it."""
    try:
        text = body.decode()
        start = _BLANK.match(text).end()  # type: ignore[union-attr]
        if text.startswith("[", start):
            return _FITS if _count_array(text, start, limit)[0] <= limit else _TOO_MANY
        if not text.startswith("{", start):
            return _FITS
        i = _BLANK.match(text, start + 1).end()  # type: ignore[union-attr]
        while not text.startswith("}", i):
            key, i = _SCAN(text, i)
            i = _BLANK.match(text, i).end()  # type: ignore[union-attr]
            if not text.startswith(":", i):
                return _FITS
            i = _BLANK.match(text, i + 1).end()  # type: ignore[union-attr]
            if key == "events" and text.startswith("[", i):
                count, i = _count_array(text, i, limit)
                if count > limit:
                    return _TOO_MANY
            else:
                _, i = _SCAN(text, i)
            i = _BLANK.match(text, i).end()  # type: ignore[union-attr]
            if text.startswith(",", i):
                i = _BLANK.match(text, i + 1).end()  # type: ignore[union-attr]
        rest = _BLANK.match(text, i + 1).end()  # type: ignore[union-attr]
        return _FITS if rest == len(text) else _NDJSON
    except (ValueError, StopIteration, UnicodeDecodeError, RecursionError):
        return _FITS


def _count_array(text: str, start: int, limit: int) -> tuple[int, int]:
    """Elements of the array opening at `start`, counting no further than limit + 1, and
    the position after it (where the count stopped, past the limit)."""
    i = _BLANK.match(text, start + 1).end()  # type: ignore[union-attr]
    if text.startswith("]", i):
        return 0, i + 1
    count = 0
    while True:
        _, i = _SCAN(text, i)
        count += 1
        if count > limit:
            return count, i
        i = _BLANK.match(text, i).end()  # type: ignore[union-attr]
        if not text.startswith(",", i):
            return count, i + 1
        i = _BLANK.match(text, i + 1).end()  # type: ignore[union-attr]


def parse_events(body: bytes, content_type: str | None, max_events: int) -> ParsedBody:
    media = (content_type or "").split(";")[0].strip().lower()
    check_event_count(body, media in NDJSON_TYPES, max_events)
    if media in NDJSON_TYPES:
        parsed = _ndjson(body)
    else:
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            if _looks_like_ndjson(body):
                parsed = _ndjson(body)
            elif (deep := _array_one_by_one(body)) is not None:
                parsed = deep
            else:
                raise BodyError(f"body is not valid JSON: {exc}") from None
        else:
            parsed = ParsedBody(_events_of(doc))
    if len(parsed.events) > max_events:  # the exact count, when the body was cheap to parse
        raise BodyError(
            f"{len(parsed.events)} events in one call; send at most {max_events} per call", 413
        )
    return parsed


_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _array_one_by_one(body: bytes) -> ParsedBody | None:
    """A JSON array whose elements are read one at a time, for a body that orjson refuses as
    a whole because one element nests deeper than it reads (1,024 levels): such an element is
    that event's error and the others are kept. None when the body is not such an array."""
    try:
        text = body.decode()
    except UnicodeDecodeError:
        return None
    i = _BLANK.match(text).end()  # type: ignore[union-attr]
    if not text.startswith("[", i):
        return None
    parsed = ParsedBody([])
    i = _BLANK.match(text, i + 1).end()  # type: ignore[union-attr]
    if text.startswith("]", i):
        return parsed
    while True:
        index = len(parsed.events)
        try:
            value, i = _SCAN(text, i)
        except RecursionError:
            end = _skip_value(text, i)
            if end is None:
                return None
            value, i = None, end
            parsed.errors.append(
                FieldError(index, "", "event is nested too deep to be read (1,000 levels)")
            )
        except (ValueError, StopIteration):
            return None
        parsed.events.append(value)
        i = _BLANK.match(text, i).end()  # type: ignore[union-attr]
        if text.startswith("]", i):
            rest = _BLANK.match(text, i + 1).end()  # type: ignore[union-attr]
            return parsed if rest == len(text) else None
        if not text.startswith(",", i):
            return None
        i = _BLANK.match(text, i + 1).end()  # type: ignore[union-attr]


def _skip_value(text: str, start: int) -> int | None:
    """The position after the object or array opening at `start`, found without parsing it
    (strings skipped whole, brackets counted); None when it never closes."""
    depth = 0
    for token in _TOKEN.finditer(text, start):
        mark = token.group()
        if mark in "[{":
            depth += 1
        elif mark in "]}":
            depth -= 1
            if depth == 0:
                return token.end()
    return None


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
