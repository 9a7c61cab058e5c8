"""`ChangeNote`: why a comparison with the previous period carries no percentage."""

from __future__ import annotations

from enum import Enum

import strawberry

from tallyql.engine import relative_change as rc


@strawberry.enum(
    description=(
        "Why a change against the previous period is null. A baseline is negligible below "
        "1 % of the current figure (absolute values) or below its unit's floor: $0.01 for "
        "money, 1 for counts (events, tokens, bytes, distinct counts), 1 ms for durations, "
        "0.001 for rates. Otherwise the change is returned, and for these non-negative "
        "figures it lies between -100 % and +9,900 %."
    )
)
class ChangeNote(Enum):
    NO_VALUE = strawberry.enum_value(
        "NO_VALUE", description="The current figure is missing (an average over no events)."
    )
    NO_BASELINE = strawberry.enum_value(
        "NO_BASELINE", description="The previous period's figure is zero or missing."
    )
    NEGLIGIBLE_BASELINE = strawberry.enum_value(
        "NEGLIGIBLE_BASELINE",
        description="The previous period's figure is too small for a percentage to mean much.",
    )


def note_of(note: rc.ChangeNote | None) -> ChangeNote | None:
    return None if note is None else ChangeNote(note.value)
