"""Event filters evaluated in Python on live rows, with the engine's meaning
(`engine/query/filters.py`): lists mean any of, fields combine with AND, `groups` means the groups'
current members, `tags` any of, every `metadata` pair must match the key's text value.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import itemgetter
from typing import Any

import orjson

from tallyql.engine.query.filters import LIST_FILTERS, EventFilterSpec
from tallyql.live.compact import INDEX, LiveRow
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


def _among(column: str, wanted: frozenset[Any]) -> Matcher:
    value_of = itemgetter(INDEX[column])
    return lambda row: value_of(row) in wanted


def _metadata_is(key: str, value: str) -> Matcher:
    return lambda row: json_text(row.metadata.get(key)) == value


def compile_matcher(spec: EventFilterSpec, groups: GroupSet | None = None) -> Matcher:
    """A predicate over live rows; `groups` carries the members when the filter has groups."""
    checks: list[Matcher] = []
    for name, column in LIST_FILTERS.items():
        values = getattr(spec, name)
        if values:
            checks.append(_among(column, frozenset(values)))
    if spec.groups:
        assert groups is not None, "a group filter needs its members"
        members = groups  # the set's members as they are at each call
        checks.append(lambda row: row.user_id in members.users)
    if spec.is_byok is not None:
        byok = spec.is_byok
        checks.append(lambda row: row.is_byok is byok)
    if spec.status_codes:
        checks.append(_among("status_code", frozenset(spec.status_codes)))
    if spec.tags:
        tags = frozenset(spec.tags)
        checks.append(lambda row: not tags.isdisjoint(row.tags))
    for match in spec.metadata:
        checks.append(_metadata_is(match.key, match.value))
    if not checks:
        return lambda row: True
    if len(checks) == 1:
        return checks[0]
    return lambda row: all(check(row) for check in checks)
