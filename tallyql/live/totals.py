"""Running totals of live rows: requests, errors, tokens and cost (exact, in nano-USD)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter

from tallyql.live.compact import COUNTS, INDEX, LiveRow

_STATUS = itemgetter(INDEX["status"])
_SUMMED = tuple((name, itemgetter(INDEX[name])) for name in COUNTS)
"""The totals' sums: each the live row field of the same name."""


@dataclass
class Totals:
    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cost_nanousd: int = 0

    def add(self, row: LiveRow) -> None:
        self.requests += 1
        if row.status == "error":
            self.errors += 1
        self.input_tokens += row.input_tokens or 0
        self.output_tokens += row.output_tokens or 0
        self.cache_read_tokens += row.cache_read_tokens or 0
        self.cache_write_tokens += row.cache_write_tokens or 0
        self.reasoning_tokens += row.reasoning_tokens or 0
        self.cost_nanousd += row.cost_nanousd or 0

    @classmethod
    def of(cls, rows: Sequence[LiveRow]) -> Totals:
        """The totals of `rows`, a column at a time: the bus works them out for every batch
        and filter, and a sum over a column runs in C where `add` per row did not."""
        statuses = list(map(_STATUS, rows))
        return cls(
            requests=len(rows),
            errors=statuses.count("error"),
            **{name: sum(map(getter, rows)) for name, getter in _SUMMED},
        )

    def absorb(self, other: Totals) -> None:
        """Add another set of totals to this one."""
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def remove(self, row: LiveRow) -> None:
        """Undo `add(row)`."""
        self.requests -= 1
        if row.status == "error":
            self.errors -= 1
        self.input_tokens -= row.input_tokens or 0
        self.output_tokens -= row.output_tokens or 0
        self.cache_read_tokens -= row.cache_read_tokens or 0
        self.cache_write_tokens -= row.cache_write_tokens or 0
        self.reasoning_tokens -= row.reasoning_tokens or 0
        self.cost_nanousd -= row.cost_nanousd or 0

    def plus(self, other: Totals) -> Totals:
        return Totals(
            *(getattr(self, name) + getattr(other, name) for name in self.__dataclass_fields__)
        )
