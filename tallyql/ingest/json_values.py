"""Checks that a value can be stored as it is: text PostgreSQL accepts, JSON every encoder and
jsonb can hold.

PostgreSQL refuses a NUL character in text and in jsonb; orjson cannot encode a lone surrogate
or an integer beyond 64 bits and stops at 255 levels of nesting; each would fail the whole
batch in the writer. The ingest checks call these so that such a value is one event's error.
"""

from __future__ import annotations

import math
from typing import Any

from tallyql.ingest.fields import MAX_JSON_DEPTH

_INT_MIN = -(2**63)
_INT_END = 2**64  # orjson encodes signed 64-bit and unsigned 64-bit integers


def text_problem(value: str) -> str | None:
    """Why a string cannot be stored, or None."""
    if "\x00" in value:
        return "must not contain NUL characters (U+0000)"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "must be valid Unicode text (no lone surrogates)"
    return None


def json_problem(value: Any, max_depth: int = MAX_JSON_DEPTH, strings: bool = True) -> str | None:
    """Why a parsed JSON value cannot be stored, or None. Iterative, so any depth is safe to
    inspect. `strings=False` skips the text checks (the fast path has checked the body's bytes
    for what they would find)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        item, depth = pop()
        if isinstance(item, dict):
            if depth > max_depth:
                return f"must not be nested deeper than {max_depth} levels"
            for key, child in item.items():
                if not isinstance(key, str):
                    return "object keys must be strings"
                if strings and (problem := text_problem(key)) is not None:
                    return problem
                if isinstance(child, dict | list | str | int | float):
                    push((child, depth + 1))
                elif child is not None and not isinstance(child, bool):
                    return "must hold only JSON values"
        elif isinstance(item, list):
            if depth > max_depth:
                return f"must not be nested deeper than {max_depth} levels"
            for child in item:
                if isinstance(child, dict | list | str | int | float):
                    push((child, depth + 1))
                elif child is not None and not isinstance(child, bool):
                    return "must hold only JSON values"
        elif isinstance(item, str):
            if strings and (problem := text_problem(item)) is not None:
                return problem
        elif isinstance(item, bool):
            continue
        elif isinstance(item, int):
            if not _INT_MIN <= item < _INT_END:
                return "must not hold integers beyond 64 bits"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return "must not hold infinite or NaN numbers"
        elif item is not None:
            return "must hold only JSON values"
    return None
