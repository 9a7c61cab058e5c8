"""Ranked groups over one or more dimensions, paged with opaque cursors.

`breakdown` in analytics.py ranks the groups of one dimension; the operations views rank
pairs too (a tool with the MCP server that owns it, a policy id with the name it had). Groups
are ordered by a metric (missing values last either way), then by their keys' text, and a
cursor holds that position, so pages never repeat or skip a group.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tallyql.engine.analytics import Asker
from tallyql.engine.query.filters import EventFilterSpec
from tallyql.engine.query.registry import Dimension, DimensionRef, Metric
from tallyql.storage.cursors import CursorError, decode_cursor, encode_cursor

MAX_PAGE = 100
NOTHING = "\uffffnothing"
"""A filter value no event carries: narrowing a filter to an empty set selects nothing."""

Keys = tuple[Any, ...]
Values = dict[Any, float | None]
"""Figures of a group by metric (or by any key a view ranks on)."""


@dataclass
class RankedPage:
    rows: list[tuple[Keys, Values]]
    cursors: list[str]
    total_count: int
    has_next_page: bool

    @property
    def end_cursor(self) -> str | None:
        return self.cursors[-1] if self.cursors else None


def narrow(spec_values: tuple[str, ...], wanted: tuple[str, ...]) -> tuple[str, ...]:
    """A filter list narrowed to `wanted`: the caller's values that are wanted, or `wanted`
    when the caller gave none; a set nothing matches when they do not meet."""
    if not spec_values:
        return wanted
    kept = tuple(v for v in spec_values if v in wanted)
    return kept or (NOTHING,)


def refs(*dimensions: Dimension) -> tuple[DimensionRef, ...]:
    return tuple(DimensionRef(d) for d in dimensions)


async def grouped(
    asker: Asker,
    dimensions: Sequence[Dimension],
    metrics: tuple[Metric, ...],
    spec: EventFilterSpec | None = None,
) -> list[tuple[Keys, Values]]:
    """Every group of the dimensions over the asker's window (one engine query)."""
    result = await asker.run(metrics, refs(*dimensions), extra_filter=spec)
    return [(key[1:], result.values[key]) for key in result.group_keys()]


def _position(value: float | None, keys: Keys, descending: bool) -> tuple[Any, ...]:
    missing = value is None or math.isnan(value)
    # Rounded to 12 significant digits: an average or rate summed in another order by the
    # database between two page requests may differ in its last bits, and an unrounded cursor
    # would then place a group on both sides of it (a row repeated or skipped).
    number = 0.0 if missing or value is None else float(f"{float(value):.12g}")
    texts = tuple("" if k is None else str(k) for k in keys)
    return (missing, -number if descending else number, texts)


def rank(
    groups: list[tuple[Keys, Values]], order: Any, descending: bool = True
) -> list[tuple[Keys, Values]]:
    return sorted(groups, key=lambda g: _position(g[1].get(order), g[0], descending))


def page(
    ranked: list[tuple[Keys, Values]],
    order: Any,
    descending: bool,
    first: int,
    after: str | None,
    kind: str,
) -> RankedPage:
    """A page of groups already in rank order (see `rank`)."""
    if not 1 <= first <= MAX_PAGE:
        raise CursorError(f"first must be between 1 and {MAX_PAGE}")
    start = 0
    if after:
        missing, number, texts = decode_cursor(kind, after, 3)
        if not isinstance(missing, bool) or not isinstance(texts, list):
            raise CursorError("invalid cursor")
        if isinstance(number, bool) or not isinstance(number, int | float):
            raise CursorError("invalid cursor")
        marker = (missing, float(number), tuple(str(t) for t in texts))
        positions = [_position(v.get(order), k, descending) for k, v in ranked]
        try:
            start = next((i for i, p in enumerate(positions) if p > marker), len(ranked))
        except TypeError:
            raise CursorError("invalid cursor for this list") from None
    rows = ranked[start : start + first]
    cursors = []
    for keys, values in rows:
        missing, number, texts = _position(values.get(order), keys, descending)
        cursors.append(encode_cursor(kind, missing, number, list(texts)))
    return RankedPage(rows, cursors, len(ranked), start + first < len(ranked))


def top_by(groups: list[tuple[Keys, Values]], metric: Metric) -> dict[Any, tuple[Any, int]]:
    """For groups keyed (a, b): per a, the non-null b with the largest metric (ties: the
    smallest text) and how many distinct non-null b it has."""
    best: dict[Any, tuple[Any, float]] = {}
    counts: dict[Any, int] = defaultdict(int)
    for (a, b), values in groups:
        if b is None:
            continue
        counts[a] += 1
        value = values.get(metric) or 0.0
        current = best.get(a)
        if current is None or (-value, str(b)) < (-current[1], str(current[0])):
            best[a] = (b, value)
    return {a: (b, counts[a]) for a, (b, _) in best.items()}
