"""Keeps `sessions` and `session_models` current, inside each ingest transaction.

Only newly inserted events reach the source relation, so a retried batch changes nothing.
One fold: the batch is aggregated per session and model, and both tables are fed from that;
then the days of the sessions it touched get new stamps (`session_versions`).
"""

from __future__ import annotations

from typing import assert_never

from tallyql.storage.dialect import Dialect
from tallyql.storage.rollups.fold import Fold
from tallyql.storage.rollups.session_versions import batch_statements, stamp_sql
from tallyql.storage.rollups.upsert import Aggregate, AggregateUpsert
from tallyql.storage.tables import EVENT_TOKEN_COLUMNS

_IS_ERROR = "CASE WHEN status = 'error' THEN 1 ELSE 0 END"
_SESSION_SUMS = (
    ("requests", "1"),
    ("errors", _IS_ERROR),
    *((c, c) for c in EVENT_TOKEN_COLUMNS),
    ("cost_nanousd", "cost_nanousd"),
    ("latency_ms_sum", "COALESCE(latency_ms, 0)"),
)
_MODEL_SUMS = (*_SESSION_SUMS, ("latency_count", "CASE WHEN latency_ms IS NULL THEN 0 ELSE 1 END"))


def _from_agg(exprs: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    return tuple((c, f"src.{c}") for c, _ in exprs)


PER_SESSION_MODEL = Aggregate(
    keys=(
        ("workspace_id", "workspace_id"),
        ("session_id", "session_id"),
        ("provider", "COALESCE(provider, '')"),
        ("model", "COALESCE(model, '')"),
    ),
    sums=_MODEL_SUMS,
    maxes=(("last_ts", "ts"),),
    mins=(("first_ts", "ts"),),
    firsts=(("user_id", "user_id"), ("agent_id", "agent_id")),
    where="session_id IS NOT NULL",
)

SESSION_MODELS = AggregateUpsert(
    table="session_models",
    keys=_from_agg(PER_SESSION_MODEL.keys),
    sums=_from_agg(_MODEL_SUMS),
)

SESSIONS = AggregateUpsert(
    table="sessions",
    keys=(("workspace_id", "src.workspace_id"), ("id", "src.session_id")),
    sums=_from_agg(_SESSION_SUMS),
    maxes=(("last_ts", "src.last_ts"),),
    mins=(("first_ts", "src.first_ts"),),
    firsts=(("user_id", "src.user_id"), ("agent_id", "src.agent_id")),
)

SESSION_FOLD = Fold("sessions", PER_SESSION_MODEL, (SESSION_MODELS, SESSIONS))


def session_statements(dialect: Dialect, source: str) -> list[str]:
    """Fold the events of `source` into sessions and session_models, and stamp the days of
    the sessions they touched (`session_versions`). On PostgreSQL that is one statement: the
    session upsert returns the spans it wrote, so no session is looked up again."""
    match dialect:
        case Dialect.POSTGRESQL:
            agg = f"agg AS MATERIALIZED ({SESSION_FOLD.select(source)})"
            models = f"models AS ({SESSION_MODELS.sql(dialect, 'agg')})"
            returning = "workspace_id, first_ts, last_ts"
            spans = f"spans AS ({SESSIONS.sql(dialect, 'agg', returning=returning)})"
            return [f"WITH {agg}, {models}, {spans} {stamp_sql(dialect, 'spans AS s')}"]
        case Dialect.SQLITE:
            return [*SESSION_FOLD.statements(dialect, source), *batch_statements(dialect, source)]
        case _:
            assert_never(dialect)
