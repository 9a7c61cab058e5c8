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

    @classmethod
    def of(cls, rows: Sequence[LiveRow]) -> Totals:
        """The totals of `rows`, a column at a time: the bus works them out for every batch
        and filter, and a sum over a column runs in C where adding row by row did not."""
        statuses = list(map(_STATUS, rows))
        return cls(
            requests=len(rows),
            errors=statuses.count("error"),
            **{name: sum(map(getter, rows)) for name, getter in _SUMMED},
        )

    def absorb(self, other: Totals, sign: int = 1) -> None:
        """Add another set of totals to this one (`sign` -1: take them out)."""
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + sign * getattr(other, name))

    def remove(self, row: LiveRow) -> None:
        """Take one row's part out (a row counted that must not be)."""
        self.absorb(Totals.of((row,)), -1)

    def plus(self, other: Totals) -> Totals:
        return Totals(
            *(getattr(self, name) + getattr(other, name) for name in self.__dataclass_fields__)
        )
