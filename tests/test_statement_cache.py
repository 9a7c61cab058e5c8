"""Statements kept by shape (engine/query/statement_cache.py): a kept statement executed with
the values of another window of the same shape is, SQL and parameters alike, the statement
built afresh for that window; a different question is built, not served."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect as SqlAlchemyDialect

from tallyql.engine.query.buckets import Bucketing, Granularity, make_bucketing, single_bucket
from tallyql.engine.query.compiler import compile_group
from tallyql.engine.query.executor import measure_groups
from tallyql.engine.query.filters import NO_FILTER, EventFilterSpec
from tallyql.engine.query.planner import plan_group
from tallyql.engine.query.registry import Dimension, DimensionRef, Metric
from tallyql.engine.query.scope import Scope
from tallyql.engine.query.statement_cache import StatementCache
from tallyql.engine.query.timerange import TimeWindow
from tallyql.storage.dialect import Dialect

DIALECTS: dict[Dialect, SqlAlchemyDialect] = {
    Dialect.POSTGRESQL: postgresql.asyncpg.dialect(),  # type: ignore[no-untyped-call]
    Dialect.SQLITE: sqlite.aiosqlite.dialect(),  # type: ignore[no-untyped-call]
}
TOKYO = "Asia/Tokyo"  # months start at 15:00 UTC: no week or day rows, whatever the month
METRICS = (Metric.REQUESTS, Metric.COST_USD, Metric.P95_LATENCY_MS, Metric.UNIQUE_USERS)
QUESTIONS: list[tuple[Granularity | None, tuple[DimensionRef, ...], EventFilterSpec, str]] = [
    (None, (), NO_FILTER, "UTC"),
    (Granularity.DAY, (), NO_FILTER, "Europe/Berlin"),
    (Granularity.HOUR, (DimensionRef(Dimension.MODEL),), NO_FILTER, "UTC"),
    (None, (DimensionRef(Dimension.KIND, keep=("llm_call", None)),), NO_FILTER, "UTC"),
    (Granularity.MONTH, (DimensionRef(Dimension.TAG),), EventFilterSpec(models=("m",)), TOKYO),
    (None, (DimensionRef(Dimension.GROUP),), EventFilterSpec(users=("u1", "u2")), "UTC"),
    (Granularity.DAY, (DimensionRef(Dimension.HOUR_OF_DAY),), NO_FILTER, "Asia/Kolkata"),
    (None, (), EventFilterSpec(metadata=()), "America/New_York"),
]
START = datetime(2026, 5, 4, 7, 23, 11, tzinfo=UTC)  # no DST change for 120 days either way


def _bucketing(granularity: Granularity | None, start: datetime, zone: str) -> Bucketing:
    window = TimeWindow(start, start + timedelta(days=30, minutes=17), ZoneInfo(zone))
    return single_bucket(window) if granularity is None else make_bucketing(window, granularity)


def _compiled(statement: Any, dialect: Dialect, params: dict[str, Any] | None) -> tuple[str, Any]:
    compiled = statement.compile(dialect=DIALECTS[dialect])
    return compiled.string, compiled.construct_params(params)


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
@pytest.mark.parametrize("question", range(len(QUESTIONS)))
@pytest.mark.parametrize("force_raw", [False, True])
def test_kept_statement_with_new_values_is_the_fresh_statement(
    dialect: Dialect, question: int, force_raw: bool
) -> None:
    granularity, dims, spec, zone = QUESTIONS[question]
    scope = Scope((3, 5)) if question % 2 else Scope.of(7)
    cache = StatementCache()
    groups = measure_groups(METRICS)
    later = START + timedelta(days=35, hours=5, minutes=41, seconds=3)  # a Monday as START
    for start, hit in ((START, False), (later, True)):
        bucketing = _bucketing(granularity, start, zone)
        for name, group in groups.items():
            plan = plan_group(
                name,
                bucketing,
                dims,
                spec,
                histogram=group.histogram is not None,
                distinct=group.distinct,
                force_raw=force_raw,
            )
            hits = cache.hits
            kept, params = cache.statement(plan, group, bucketing, dims, spec, scope, dialect)
            assert cache.hits == hits + hit
            fresh = compile_group(plan, group, bucketing, dims, spec, scope, dialect)
            assert _compiled(kept, dialect, params) == _compiled(fresh, dialect, None)


def test_another_question_is_built_not_served() -> None:
    cache = StatementCache()
    bucketing = _bucketing(None, START, "UTC")
    (name, group), *_ = measure_groups((Metric.REQUESTS,)).items()
    plan = plan_group(name, bucketing, (), NO_FILTER)
    first, _ = cache.statement(plan, group, bucketing, (), NO_FILTER, Scope.of(1), Dialect.SQLITE)
    for spec, scope in (
        (EventFilterSpec(models=("a",)), Scope.of(1)),
        (NO_FILTER, Scope.of(2)),
        (EventFilterSpec(models=("b",)), Scope.of(1)),
    ):
        planned = plan_group(name, bucketing, (), spec)
        other, _ = cache.statement(planned, group, bucketing, (), spec, scope, Dialect.SQLITE)
        assert other is not first
    assert (cache.hits, cache.misses) == (0, 4)
    again, _ = cache.statement(plan, group, bucketing, (), NO_FILTER, Scope.of(1), Dialect.SQLITE)
    assert again is first and cache.hits == 1


def test_the_cache_is_bounded() -> None:
    cache = StatementCache(size=2)
    bucketing = _bucketing(None, START, "UTC")
    (name, group), *_ = measure_groups((Metric.REQUESTS,)).items()
    plan = plan_group(name, bucketing, (), NO_FILTER)
    for workspace in (1, 2, 3, 1):
        cache.statement(plan, group, bucketing, (), NO_FILTER, Scope.of(workspace), Dialect.SQLITE)
    assert (cache.hits, cache.misses, len(cache._kept)) == (0, 4, 2)
