"""Event filters evaluated in Python on live rows, with the engine's meaning
(`engine/query/filters.py`): lists mean any of, fields combine with AND, `groups` means the groups'
current members, `tags` any of, every `metadata` pair must match the key's text value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from tallyql.engine.query.filters import LIST_FILTERS, EventFilterSpec
from tallyql.live.compact import LiveRow
from tallyql.live.membership import GroupSet

Matcher = Callable[[LiveRow], bool]


def json_text(value: Any) -> str | None:
    """A metadata value as text, like PostgreSQL's `->>` (NULL for JSON null)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return orjson.dumps(value).decode()  # numbers as written; objects and arrays as JSON


def compile_matcher(spec: EventFilterSpec, groups: GroupSet | None = None) -> Matcher:
    """A predicate over live rows; `groups` carries the members when the filter has groups."""
    checks: list[Matcher] = []
    for name, column in LIST_FILTERS.items():
        values = getattr(spec, name)
        if values:
            wanted = frozenset(values)
            checks.append(lambda row, c=column, w=wanted: row.get(c) in w)
    if spec.groups:
        assert groups is not None, "a group filter needs its members"
        checks.append(lambda row, g=groups: row.get("user_id") in g.users)
    if spec.is_byok is not None:
        checks.append(lambda row, b=spec.is_byok: bool(row.get("is_byok")) is b)
    if spec.status_codes:
        codes = frozenset(spec.status_codes)
        checks.append(lambda row, w=codes: row.get("status_code") in w)
    if spec.tags:
        tags = frozenset(spec.tags)
        checks.append(lambda row, t=tags: not t.isdisjoint(row.get("tags") or ()))
    for match in spec.metadata:
        checks.append(
            lambda row, k=match.key, v=match.value: (
                json_text((row.get("metadata") or {}).get(k)) == v
            )
        )
    if not checks:
        return lambda row: True
    if len(checks) == 1:
        return checks[0]
    return lambda row: all(check(row) for check in checks)
