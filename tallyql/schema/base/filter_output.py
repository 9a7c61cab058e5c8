"""A stored event filter shown as JSON in the shape of the `EventFilter` input (camelCase
keys, enum names), so that a client can send it back as it is."""

from __future__ import annotations

from enum import Enum
from typing import Any

from tallyql.engine.filter_codec import spec_to_json
from tallyql.engine.filters import EventFilterSpec
from tallyql.schema.base.common import CostSource, ErrorType, EventKind, EventStatus

_ENUMS: dict[str, type[Enum]] = {
    "kinds": EventKind,
    "statuses": EventStatus,
    "error_types": ErrorType,
    "cost_sources": CostSource,
}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def filter_as_input(spec: EventFilterSpec) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in spec_to_json(spec).items():
        enum = _ENUMS.get(name)
        if enum is not None:
            value = [enum(v).name for v in value]
        out[_camel(name)] = value
    return out
