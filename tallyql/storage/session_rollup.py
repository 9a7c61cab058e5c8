"""Keeps `sessions` and `session_models` current, inside each ingest transaction.

Only newly inserted events reach the source relation, so a retried batch changes nothing.
"""

from __future__ import annotations

from tallyql.storage.tables import EVENT_TOKEN_COLUMNS
from tallyql.storage.upsert import AggregateUpsert

_IS_ERROR = "CASE WHEN status = 'error' THEN 1 ELSE 0 END"
_TOKENS = tuple((c, c) for c in EVENT_TOKEN_COLUMNS)

SESSIONS = AggregateUpsert(
    table="sessions",
    keys=(("workspace_id", "workspace_id"), ("id", "session_id")),
    sums=(
        ("requests", "1"),
        ("errors", _IS_ERROR),
        *_TOKENS,
        ("cost_nanousd", "cost_nanousd"),
        ("latency_ms_sum", "COALESCE(latency_ms, 0)"),
    ),
    maxes=(("last_ts", "ts"),),
    mins=(("first_ts", "ts"),),
    firsts=(("user_id", "user_id"), ("agent_id", "agent_id")),
    where="session_id IS NOT NULL",
)

SESSION_MODELS = AggregateUpsert(
    table="session_models",
    keys=(
        ("workspace_id", "workspace_id"),
        ("session_id", "session_id"),
        ("provider", "COALESCE(provider, '')"),
        ("model", "COALESCE(model, '')"),
    ),
    sums=(
        ("requests", "1"),
        ("errors", _IS_ERROR),
        *_TOKENS,
        ("cost_nanousd", "cost_nanousd"),
        ("latency_ms_sum", "COALESCE(latency_ms, 0)"),
        ("latency_count", "CASE WHEN latency_ms IS NULL THEN 0 ELSE 1 END"),
    ),
    where="session_id IS NOT NULL",
)


def session_statements(dialect: str, source: str) -> list[str]:
    return [SESSIONS.sql(dialect, source), SESSION_MODELS.sql(dialect, source)]
