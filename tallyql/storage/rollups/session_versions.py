"""Versions of each UTC day's sessions, so that readers may keep what they read of a day.

`session_day_versions` holds, per workspace and UTC day (whole days since the epoch), a
random stamp that changes in the same transaction as any session whose span [first_ts,
last_ts] touches that day: the writer's batches, repricing, retention purges and rebuilds
all stamp the days of the sessions they change, before deleting or after changing them. A
session's last activity can only move later, so its old and new last day both lie in its
span. A reader that read a day's stamp before the day's sessions, and sees the same stamp
later, knows that the day's sessions are as it read them (`engine/session_digests.py`); a
day without a row has no known stamp and is never kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import assert_never

from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection

from tallyql.storage.dialect import Dialect, day_of_sql

TABLE = "session_day_versions"
DAY_SECONDS = 86_400


def stamp_sql(dialect: Dialect, sessions_from: str, where: str = "true") -> str:
    """A statement stamping every day touched by the sessions that `sessions_from` (FROM
    items naming those rows `s`) and `where` select."""
    first, last = day_of_sql(dialect, "s.first_ts"), day_of_sql(dialect, "s.last_ts")
    match dialect:
        case Dialect.POSTGRESQL:
            return (
                f"INSERT INTO {TABLE} (workspace_id, day, version) "
                "SELECT workspace_id, day, (random() * 9.0e18)::bigint FROM ("
                "SELECT DISTINCT s.workspace_id, d.day "
                f"FROM {sessions_from} "
                f"CROSS JOIN LATERAL generate_series({first}, {last}) AS d(day) WHERE {where}"
                ") AS touched ORDER BY workspace_id, day "
                "ON CONFLICT (workspace_id, day) DO UPDATE SET version = EXCLUDED.version"
            )
        case Dialect.SQLITE:
            return (
                f"INSERT INTO {TABLE} (workspace_id, day, version) "
                "WITH RECURSIVE spans(workspace_id, day, last_day) AS ("
                f"SELECT s.workspace_id, {first}, {last} FROM {sessions_from} WHERE {where} "
                "UNION SELECT workspace_id, day + 1, last_day FROM spans WHERE day < last_day"
                ") SELECT workspace_id, day, random() FROM "
                "(SELECT DISTINCT workspace_id, day FROM spans) AS touched WHERE true "
                "ON CONFLICT (workspace_id, day) DO UPDATE SET version = excluded.version"
            )
        case _:
            assert_never(dialect)


def batch_statements(dialect: Dialect, source: str) -> list[str]:
    """Stamp the days of the sessions that the events of `source` touched (after the session
    fold has brought them up to date; PostgreSQL stamps within the fold instead)."""
    touched = (
        "sessions AS s JOIN (SELECT DISTINCT workspace_id, session_id "
        f"FROM {source} WHERE session_id IS NOT NULL) AS b "
        "ON s.workspace_id = b.workspace_id AND s.id = b.session_id"
    )
    return [stamp_sql(dialect, touched)]


async def stamp_sessions(
    conn: AsyncConnection, dialect: Dialect, workspace_id: int, session_ids: Sequence[str]
) -> None:
    """Stamp the days of some sessions of one workspace (as they are now)."""
    if not session_ids:
        return
    statement = text(
        stamp_sql(dialect, "sessions AS s", "s.workspace_id = :ws AND s.id IN :ids")
    ).bindparams(bindparam("ids", expanding=True))
    await conn.execute(statement, {"ws": workspace_id, "ids": list(session_ids)})


async def stamp_workspace(
    conn: AsyncConnection, dialect: Dialect, workspace_id: int | None
) -> None:
    """Stamp the days of every session of a workspace (None: of every workspace)."""
    if workspace_id is None:
        await conn.execute(text(stamp_sql(dialect, "sessions AS s")))
        return
    await conn.execute(
        text(stamp_sql(dialect, "sessions AS s", "s.workspace_id = :ws")), {"ws": workspace_id}
    )
