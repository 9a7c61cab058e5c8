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


_SCAN = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # set in __init__; typeshed omits it
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
        start = _blank_text(text, 0)
        if text.startswith("[", start):
            return _FITS if _count_array(text, start, limit)[0] <= limit else _TOO_MANY
        if not text.startswith("{", start):
            return _FITS
        i = _blank_text(text, start + 1)
        while not text.startswith("}", i):
            key, i = _SCAN(text, i)
            i = _blank_text(text, i)
            if not text.startswith(":", i):
                return _FITS
            i = _blank_text(text, i + 1)
            if key == "events" and text.startswith("[", i):
                count, i = _count_array(text, i, limit)
                if count > limit:
                    return _TOO_MANY
            else:
                _, i = _SCAN(text, i)
            i = _blank_text(text, i)
            if text.startswith(",", i):
                i = _blank_text(text, i + 1)
        rest = _blank_text(text, i + 1)
        return _FITS if rest == len(text) else _NDJSON
    except (ValueError, StopIteration, UnicodeDecodeError, RecursionError):
        return _FITS


def _count_array(text: str, start: int, limit: int) -> tuple[int, int]:
    """Elements of the array opening at `start`, counting no further than limit + 1, and
    the position after it (where the count stopped, past the limit)."""
    i = _blank_text(text, start + 1)
    if text.startswith("]", i):
        return 0, i + 1
    count = 0
    while True:
        _, i = _SCAN(text, i)
        count += 1
        if count > limit:
            return count, i
        i = _blank_text(text, i)
        if not text.startswith(",", i):
            return count, i + 1
        i = _blank_text(text, i + 1)


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
            elif (split := _split_events(body, max_events)) is not None:
                parsed = split
            else:
                raise BodyError(f"body is not valid JSON: {exc}") from None
        else:
            parsed = ParsedBody(_events_of(doc))
    if len(parsed.events) > max_events:  # the exact count, when the body was cheap to parse
        raise BodyError(
            f"{len(parsed.events)} events in one call; send at most {max_events} per call", 413
        )
    return parsed


ORJSON_MAX_DEPTH = 1024
"""How deep orjson reads; a deeper value is refused whole."""

# Splitting a body that orjson refuses into its events, each parsed on its own. Only what
# delimits events must be sound: strings (skipped whole, escapes and all, whatever raw
# characters they hold), brackets (counted), the separators between events and the array
# (or {"events": [...]} object) around them. What lies inside one event's extent is that
# event's business: a raw control character in one of its strings, nesting deeper than
# orjson reads, a broken literal, invalid UTF-8 are its error (index, field, message), and
# the other events of the call are kept. A body whose outer structure is broken (an
# unterminated string or bracket, a missing separator, a control character between events)
# cannot be split with confidence and stays a 400, as does an ignored member of the wrapper
# that is not valid JSON.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_MARK = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]|"', re.DOTALL)
_SCALAR = re.compile(rb'[^,\[\]{}" \t\n\r]+')
_BLANK_BYTES = re.compile(rb"[ \t\n\r]*")
_CONTROL = re.compile(rb"[\x00-\x1f]")


def _blank(body: bytes, i: int) -> int:
    found = _BLANK_BYTES.match(body, i)
    assert found is not None  # the pattern matches the empty string
    return found.end()


def _blank_text(text: str, i: int) -> int:
    found = _BLANK.match(text, i)
    assert found is not None  # the pattern matches the empty string
    return found.end()


def _extent(body: bytes, start: int) -> int | None:
    """The position after the JSON value starting at `start`, found without parsing it
    (strings skipped whole, brackets counted); None when it has no sound end."""
    head = body[start : start + 1]
    if head in (b"[", b"{"):
        depth = 0
        for mark in _MARK.finditer(body, start):
            token = mark.group()
            if token == b'"':
                return None  # a string that never ends
            if token in (b"[", b"{"):
                depth += 1
            elif token in (b"]", b"}"):
                depth -= 1
                if depth == 0:
                    return mark.end()
        return None
    found = (_STRING if head == b'"' else _SCALAR).match(body, start)
    return found.end() if found else None


def _members(body: bytes, start: int) -> list[tuple[bytes, int, int]] | None:
    """(raw key, value start, value end) of each member of the object opening at `start`,
    and None when its members cannot be delimited. The last item is (b"", end, end)."""
    out: list[tuple[bytes, int, int]] = []
    i = _blank(body, start + 1)
    if body.startswith(b"}", i):
        return [(b"", i + 1, i + 1)]
    while True:
        key = _STRING.match(body, i)
        if key is None:
            return None
        i = _blank(body, key.end())
        if not body.startswith(b":", i):
            return None
        value = _blank(body, i + 1)
        end = _extent(body, value)
        if end is None:
            return None
        out.append((key.group(), value, end))
        i = _blank(body, end)
        if body.startswith(b"}", i):
            out.append((b"", i + 1, i + 1))
            return out
        if not body.startswith(b",", i):
            return None
        i = _blank(body, i + 1)


def _why(value: bytes, exc: orjson.JSONDecodeError) -> str:
    """What makes a delimited value unreadable, in a client's words."""
    if exc.msg.startswith("depth limit"):
        return f"is nested too deep to be read (more than {ORJSON_MAX_DEPTH:,} levels)"
    if "control character" in exc.msg:
        for mark in _MARK.finditer(value):
            if (found := _CONTROL.search(mark.group())) is not None:
                code = found.group()[0]
                return (
                    f"holds a raw control character (U+{code:04X}) in a string; JSON "
                    f"strings must escape it (\\u{code:04x})"
                )
        return "holds a raw control character in a string; JSON strings must escape it"
    return f"is not valid JSON: {exc.msg}"


def _element(body: bytes, start: int, end: int, index: int) -> tuple[Any, FieldError | None]:
    """The event delimited by [start, end), or None and its error: named after the member
    of the event that cannot be read, when one can be told."""
    try:
        return orjson.loads(body[start:end]), None
    except orjson.JSONDecodeError as exc:
        whole = exc
    if body.startswith(b"{", start):
        for raw_key, value_start, value_end in _members(body, start) or ():
            if not raw_key:
                break
            try:
                orjson.loads(body[value_start:value_end])
            except orjson.JSONDecodeError as exc:
                try:
                    key = orjson.loads(raw_key)
                except orjson.JSONDecodeError:
                    break
                return None, FieldError(index, key, _why(body[value_start:value_end], exc))
    return None, FieldError(index, "", "event " + _why(body[start:end], whole))


def _split_events(body: bytes, max_events: int) -> ParsedBody | None:
    """The events of a JSON array or {"events": [...]} body (or of one event) that orjson
    refuses as a whole, each read on its own (see above); None when the body cannot be
    split. BodyError(413) past `max_events`."""
    i = _blank(body, 0)
    if body.startswith(b"[", i):
        found = _array_items(body, i, max_events)
        if found is None:
            return None
        parsed, end = found
        return parsed if _blank(body, end) == len(body) else None
    if not body.startswith(b"{", i):
        return None
    members = _members(body, i)
    if members is None or _blank(body, members[-1][2]) != len(body):
        return None
    keys = []
    for raw_key, _, _ in members[:-1]:
        try:
            keys.append(orjson.loads(raw_key))
        except orjson.JSONDecodeError:
            keys.append(None)
    if "events" not in keys:  # one event on its own
        value, error = _element(body, i, members[-1][2], 0)
        return ParsedBody([value], [error] if error else [])
    wanted = len(keys) - 1 - keys[::-1].index("events")  # the last one wins, as in orjson
    events: ParsedBody | None = None
    for position, (_, start, end) in enumerate(members[:-1]):
        if position == wanted:
            if not body.startswith(b"[", start):
                raise BodyError('"events" must be a JSON array of events')
            found = _array_items(body, start, max_events)
            if found is None:
                return None
            events = found[0]
        else:  # ignored, yet a body with it must be JSON
            try:
                orjson.loads(body[start:end])
            except orjson.JSONDecodeError:
                return None
    return events


def _array_items(body: bytes, start: int, max_events: int) -> tuple[ParsedBody, int] | None:
    """The events of the array opening at `start`, and the position after it."""
    parsed = ParsedBody([])
    i = _blank(body, start + 1)
    if body.startswith(b"]", i):
        return parsed, i + 1
    while True:
        end = _extent(body, i)
        if end is None:
            return None
        index = len(parsed.events)
        if index >= max_events:
            raise BodyError(
                f"more than {max_events} events in one call; send at most {max_events} per call",
                413,
            )
        value, error = _element(body, i, end, index)
        parsed.events.append(value)
        if error is not None:
            parsed.errors.append(error)
        i = _blank(body, end)
        if body.startswith(b"]", i):
            return parsed, i + 1
        if not body.startswith(b",", i):
            return None
        i = _blank(body, i + 1)


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
            start = _blank(line, 0)
            _, error = _element(line, start, len(line), index)
            if error is None or not error.field:  # not one member's fault: the line's
                error = FieldError(index, "", f"line is not valid JSON: {exc.msg}")
            parsed.errors.append(error)
    return parsed
