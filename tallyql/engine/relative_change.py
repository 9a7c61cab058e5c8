"""The relative change of a figure against a baseline (the previous period), or why there is
none: one definition for every comparison the API returns (overview changes, cost trend,
projected month).

A percentage is only meaningful against a baseline of some size: $0.00095 before and $476
now is +50,148,987 %, a number a dashboard prints and nobody can use. So the change is null,
with a note saying why, when:
- NO_VALUE: the current figure is missing (an average or percentile over no events);
- NO_BASELINE: the baseline is missing or zero;
- NEGLIGIBLE_BASELINE: the baseline is below NEGLIGIBLE_SHARE (1 %) of the current figure in
  absolute value, or below the absolute floor of its unit (`floor_of`): $0.01 for money,
  1 for counts (events, tokens, bytes, distinct counts), 1 ms for durations, 0.001 for rates.
Otherwise the change is (current - previous) / previous. For non-negative figures (all of
tallyql's) it then lies within [-1, MAX_RELATIVE]: a baseline of at least 1 % of the current
figure bounds a rise at 99x (+9,900 %).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from tallyql.engine.query.registry import Metric

NEGLIGIBLE_SHARE = 0.01
"""A baseline below this share of the current figure (absolute values) is negligible."""
MAX_RELATIVE = 1 / NEGLIGIBLE_SHARE - 1
"""The largest relative change returned for non-negative figures (99 = +9,900 %)."""
USD_FLOOR = 0.01
COUNT_FLOOR = 1.0
MS_FLOOR = 1.0
RATE_FLOOR = 0.001


class ChangeNote(Enum):
    NO_VALUE = "NO_VALUE"
    NO_BASELINE = "NO_BASELINE"
    NEGLIGIBLE_BASELINE = "NEGLIGIBLE_BASELINE"


@dataclass(frozen=True)
class Change:
    relative: float | None
    """(current - previous) / previous; None with a note."""
    note: ChangeNote | None

    @property
    def percent(self) -> float | None:
        return None if self.relative is None else self.relative * 100


def floor_of(metric: Metric) -> float:
    """The absolute floor under which a baseline of this metric is negligible, by its unit."""
    name = metric.value
    if name.endswith("_USD"):
        return USD_FLOOR
    if name.endswith("_MS"):
        return MS_FLOOR
    if name.endswith("_RATE"):
        return RATE_FLOOR
    return COUNT_FLOOR


def relative_change(current: float | None, previous: float | None, floor: float) -> Change:
    """The change of `current` against `previous` (module docstring); `floor` is the
    baseline's absolute floor in the figure's unit."""
    if current is None:
        return Change(None, ChangeNote.NO_VALUE)
    if not previous:
        return Change(None, ChangeNote.NO_BASELINE)
    if abs(previous) < floor or abs(previous) < NEGLIGIBLE_SHARE * abs(current):
        return Change(None, ChangeNote.NEGLIGIBLE_BASELINE)
    return Change((current - previous) / previous, None)
