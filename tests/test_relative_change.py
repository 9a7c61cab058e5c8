"""The one definition of a change against a baseline (`tallyql.engine.relative_change`):
exactly (current - previous) / previous when the baseline counts, else null with a note, and
never a runaway percentage."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tallyql.engine.query.registry import Metric
from tallyql.engine.relative_change import (
    MAX_RELATIVE,
    ChangeNote,
    floor_of,
    relative_change,
)

figures = st.floats(min_value=0, max_value=1e12, allow_nan=False, allow_infinity=False)
floors = st.sampled_from([0.01, 1.0, 0.001])


@given(current=figures, previous=figures, floor=floors)
def test_never_above_the_bound(current: float, previous: float, floor: float) -> None:
    change = relative_change(current, previous, floor)
    negligible = previous < floor or previous < 0.01 * current
    if previous == 0:
        assert (change.relative, change.note) == (None, ChangeNote.NO_BASELINE)
    elif negligible:
        assert (change.relative, change.note) == (None, ChangeNote.NEGLIGIBLE_BASELINE)
    else:
        assert change.note is None
        assert change.relative == (current - previous) / previous
        assert -1.0 <= change.relative <= MAX_RELATIVE * (1 + 1e-12)
        assert change.percent is not None and change.percent <= 9_900 * (1 + 1e-12)


@given(previous=figures, floor=floors)
def test_a_missing_figure_has_no_change(previous: float, floor: float) -> None:
    assert relative_change(None, previous, floor).note is ChangeNote.NO_VALUE
    assert relative_change(5.0, None, floor).note is ChangeNote.NO_BASELINE


def test_the_audit_figures_and_the_floors() -> None:
    audit = relative_change(476.4, 0.00095, floor_of(Metric.COST_USD))
    assert (audit.percent, audit.note) == (None, ChangeNote.NEGLIGIBLE_BASELINE)
    assert floor_of(Metric.COST_USD) == 0.01
    assert floor_of(Metric.REQUESTS) == floor_of(Metric.TOTAL_TOKENS) == 1.0
    assert floor_of(Metric.P95_LATENCY_MS) == 1.0
    assert floor_of(Metric.ERROR_RATE) == 0.001
    assert relative_change(150.0, 100.0, 1.0).relative == 0.5
