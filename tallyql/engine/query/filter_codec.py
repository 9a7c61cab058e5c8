"""Event filters stored as JSON (budgets and alert rules keep theirs in a column).

The JSON form has the spec's field names and only the fields that select something:
lists of strings (`status_codes`: of integers), `metadata` as a list of {key, value},
`is_byok` as a boolean.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from tallyql.engine.query.filters import EventFilterSpec, MetadataMatch


def spec_to_json(spec: EventFilterSpec) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(EventFilterSpec):
        value = getattr(spec, f.name)
        if f.name == "metadata":
            if value:
                out["metadata"] = [{"key": m.key, "value": m.value} for m in value]
        elif f.name == "is_byok":
            if value is not None:
                out["is_byok"] = bool(value)
        elif value:
            out[f.name] = list(value)
    return out


def spec_from_json(data: dict[str, Any] | None) -> EventFilterSpec:
    if not data:
        return EventFilterSpec()
    values: dict[str, Any] = {}
    for f in fields(EventFilterSpec):
        if f.name not in data:
            continue
        raw = data[f.name]
        if f.name == "metadata":
            values["metadata"] = tuple(MetadataMatch(str(m["key"]), str(m["value"])) for m in raw)
        elif f.name == "is_byok":
            values["is_byok"] = None if raw is None else bool(raw)
        elif f.name == "status_codes":
            values["status_codes"] = tuple(int(v) for v in raw)
        else:
            values[f.name] = tuple(str(v) for v in raw)
    return EventFilterSpec(**values)
