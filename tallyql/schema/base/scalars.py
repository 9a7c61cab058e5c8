"""Scalars beyond the GraphQL built-ins, registered through `StrawberryConfig.scalar_map`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NewType, TypeAlias

import strawberry
from strawberry.types.scalar import ScalarDefinition

if TYPE_CHECKING:
    # To the checker a JSON is any value and a Long any int: strawberry needs distinct objects
    # to map to the scalars, but wrapping every value in JSON(...) or Long(...) would check
    # nothing more.
    JSON: TypeAlias = object
    Long: TypeAlias = int
else:
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


def as_count(value: float) -> int:
    """A count the engine carries as a float (it holds every measure as one), as the int it
    is: the conversion the Long serializer made before, now where the type says so."""
    return int(value)
