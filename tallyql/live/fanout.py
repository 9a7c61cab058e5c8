"""One batch of live rows as the subscribers of one filter see it, worked out once.

Subscribers with the same filter (the same `EventFilterSpec` and, for group filters, the same
member set) share a `FilterView` of each batch: the rows their matcher accepts, the items for
each choice of REQUEST/ERROR types, the totals of those rows, and the totals of the rows in a
time window (today). The bus builds one view per distinct filter and hands it to every
subscriber of that filter, so that publishing costs O(filters * rows + subscribers) per
batch instead of O(subscribers * rows).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

from tallyql.live.compact import LiveRow
from tallyql.live.matcher import Matcher
from tallyql.live.totals import Totals

REQUEST = "request"
ERROR = "error"

Item = tuple[str, Any]
FilterKey = Hashable


def items_of(rows: Sequence[LiveRow], errors_apart: bool) -> list[Item]:
    """The items of rows of the chosen types (`FilterView.of_types`): a failed one is an
    ERROR item when `errors_apart` (ERROR was chosen), every other row a REQUEST item. One
    comprehension each: the bus asks for every batch and filter."""
    if errors_apart:
        return [(ERROR if row.status == "error" else REQUEST, row) for row in rows]
    return [(REQUEST, row) for row in rows]


class FilterView:
    __slots__ = ("_items", "_totals", "_windows", "rows")

    def __init__(self, matcher: Matcher, rows: Sequence[LiveRow]) -> None:
        self.rows: list[LiveRow] = [row for row in rows if matcher(row)]
        self._items: dict[tuple[bool, bool], list[Item]] = {}
        self._totals: Totals | None = None
        self._windows: dict[tuple[int, int], tuple[Totals, list[LiveRow]]] = {}

    def items(self, wants_request: bool, wants_error: bool) -> list[Item]:
        """The queue items of the matching rows: an error is an ERROR item when asked for,
        otherwise (like every other row) a REQUEST item when those are asked for."""
        key = (wants_request, wants_error)
        items = self._items.get(key)
        if items is None:
            items = self._items[key] = items_of(
                self.of_types(wants_request, wants_error), wants_error
            )
        return items

    def of_types(self, wants_request: bool, wants_error: bool) -> list[LiveRow]:
        """The matching rows that are items of the chosen types: every row when REQUEST is
        chosen (errors are items too, as ERROR or REQUEST), the failed ones for ERROR only."""
        if wants_request:
            return self.rows
        if wants_error:
            return [row for row in self.rows if row.status == "error"]
        return []

    @property
    def totals(self) -> Totals:
        if self._totals is None:
            self._totals = Totals.of(self.rows)
        return self._totals

    def window(self, start_us: int, end_us: int) -> tuple[Totals, list[LiveRow]]:
        """Totals and rows of the matching rows with a timestamp in [start_us, end_us)."""
        key = (start_us, end_us)
        hit = self._windows.get(key)
        if hit is None:
            rows = [row for row in self.rows if start_us <= row.ts_us < end_us]
            totals = self.totals if len(rows) == len(self.rows) else Totals.of(rows)
            hit = self._windows[key] = (totals, rows)
        return hit
