"""Statements kept by plan shape, so that the next window of the same question binds new
values instead of building its SQL again.

Building a SQLAlchemy statement is a dashboard request's largest Python cost (each piece of a
plan is a SELECT of a few dozen expressions, and SQLAlchemy's own compiled cache needs a key
computed from the whole tree). A dashboard asks the same questions again and again, and only
the window moves: so a statement is kept under its shape, everything its SQL depends on apart
from the window (dialect, measure group, dimensions with their kept keys, filter, scope, the
plan's source tables and piece counts, the bucketing's granularity and number of zone offset
changes), and the values that move with the window are bound by name (`Bucketing.params`,
`compiler.piece_params`) and passed with each execution. A kept statement also keeps its
memoized SQLAlchemy cache key, so SQLAlchemy finds its compiled form without walking it.

Filter values, workspace ids and kept dimension keys are part of the shape (they are bound
too, but as the statement's own values), so a key holds one tenant's question; the cache is
a bounded LRU, and a statement evicted is only built again.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Sequence
from typing import Any

from sqlalchemy import Select

from tallyql.engine.query.buckets import Bucketing
from tallyql.engine.query.compiler import GroupSpec, compile_group, piece_params, plan_shape
from tallyql.engine.query.filters import EventFilterSpec
from tallyql.engine.query.planner import Plan
from tallyql.engine.query.registry import DimensionRef
from tallyql.engine.query.scope import Scope
from tallyql.storage.dialect import Dialect

MAX_STATEMENTS = 1_000
"""Statements kept (a few kilobytes to a few tens each)."""


class StatementCache:
    """A bounded LRU of statements by shape (one event loop: no locking)."""

    def __init__(self, size: int = MAX_STATEMENTS) -> None:
        self.size = size
        self._kept: OrderedDict[Hashable, Select[Any]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def statement(
        self,
        plan: Plan,
        group: GroupSpec,
        bucketing: Bucketing,
        dimensions: Sequence[DimensionRef],
        spec: EventFilterSpec,
        scope: Scope,
        dialect: Dialect,
    ) -> tuple[Select[Any], dict[str, Any]]:
        """The plan's statement and the values to execute it with."""
        params = {**bucketing.params, **piece_params(plan, dialect)}
        key = (
            dialect,
            group,
            tuple(dimensions),
            spec,
            scope,
            plan_shape(plan, dialect),
            bucketing.shape,
        )
        statement = self._kept.get(key)
        if statement is not None:
            self._kept.move_to_end(key)
            self.hits += 1
            return statement, params
        self.misses += 1
        statement = compile_group(plan, group, bucketing, dimensions, spec, scope, dialect)
        self._kept[key] = statement
        if len(self._kept) > self.size:
            self._kept.popitem(last=False)
        return statement, params

    def clear(self) -> None:
        self._kept.clear()


STATEMENTS = StatementCache()
"""The process's statements (tests clear it to build every statement afresh)."""
