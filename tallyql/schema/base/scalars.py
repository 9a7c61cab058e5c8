"""Scalars beyond the GraphQL built-ins, registered through `StrawberryConfig.scalar_map`."""

from __future__ import annotations

from typing import Any, NewType

import strawberry
from strawberry.types.scalar import ScalarDefinition

JSON = NewType("JSON", object)
Long = NewType("Long", int)


def _parse_long(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("Long must be an integer")
    return int(value)


SCALAR_MAP: dict[object, ScalarDefinition] = {
    JSON: strawberry.scalar(
        name="JSON",
        description="Any JSON value.",
        serialize=lambda v: v,
        parse_value=lambda v: v,
    ),
    Long: strawberry.scalar(
        name="Long",
        description="A 64-bit integer, for counts and token sums beyond GraphQL's 32-bit Int.",
        serialize=int,
        parse_value=_parse_long,
    ),
}
