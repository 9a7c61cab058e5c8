"""Opaque cursors for Relay connections: base64url of a small JSON array."""

from __future__ import annotations

import base64
from typing import Any

import orjson

MAX_PAGE_SIZE = 100


class CursorError(ValueError):
    """A cursor that this server did not hand out (BAD_USER_INPUT)."""


def encode_cursor(kind: str, *values: Any) -> str:
    raw = orjson.dumps([kind, *values])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(kind: str, cursor: str, arity: int) -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = orjson.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, orjson.JSONDecodeError):
        raise CursorError("invalid cursor") from None
    if not isinstance(values, list) or len(values) != arity + 1 or values[0] != kind:
        raise CursorError("invalid cursor for this list")
    return values[1:]


def check_page_size(first: int, maximum: int = MAX_PAGE_SIZE) -> int:
    if first < 1 or first > maximum:
        raise CursorError(f"first must be between 1 and {maximum}")
    return first
