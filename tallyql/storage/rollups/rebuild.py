"""Recomputes rollups (and, for whole workspaces, sessions) from raw events.

Used by `tallyql rollups rebuild` and after repricing. The range is widened to whole UTC days so
that every hour and day row it touches is recomputed from all of its events; the week rows of
the weeks it touches are then recomputed from their day rows (a week may reach back past the
raw events' retention, its days' rows do not). On PostgreSQL
the summary and delta tables are locked for the transaction (and the compaction lock taken), so
concurrent ingest waits rather than staging a batch into a half-rebuilt range, and the range's
staged deltas are dropped with its rollup rows (the events they came from are re-read); on
SQLite the single writer connection serialises.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from tallyql.clock import clock
from tallyql.config import Settings
from tallyql.storage.data_versions import bump, bump_all
from tallyql.storage.database import Database
from tallyql.storage.dialect import Dialect
from tallyql.storage.locks import Lock, hold
from tallyql.storage.migrate import upgrade
from tallyql.storage.rollups.declarations import (
    DELTA_TABLES,
    HISTOGRAM_ROLLUPS,
    ROLLUPS,
    WEEK,
    grain_start,
)
from tallyql.storage.rollups.folds import rollup_steps, weeks_from_days_statements
from tallyql.storage.rollups.histograms import SqlAlchemyRunner, weeks_from_days
from tallyql.storage.rollups.session_versions import stamp_workspace
from tallyql.storage.rollups.sessions import session_statements
from tallyql.storage.tables import events
from tallyql.storage.types import parse_timestamp, stored_time
from tallyql.storage.workspaces import find_workspace

DAY = timedelta(days=1)


@dataclass(frozen=True)
class RebuildReport:
    start: datetime
    end: datetime
    workspace_id: int | None
    events: int
    sessions_rebuilt: bool


def day_floor(value: datetime) -> datetime:
    value = value.astimezone(UTC)
    return value.replace(hour=0, minute=0, second=0, microsecond=0)


def day_ceil(value: datetime) -> datetime:
    floor = day_floor(value)
    return floor if floor == value else floor + DAY


def _summary_tables() -> list[str]:
    return [r.table(g) for r in (*ROLLUPS, *HISTOGRAM_ROLLUPS) for g in r.grains]


async def recompute_weeks(
    conn: AsyncConnection,
    dialect: Dialect,
    w0: int,
    w1: int,
    workspace_id: int | None,
    histograms: bool = True,
) -> None:
    """Replace the week rows of weeks [w0, w1) (epoch seconds of Mondays; one workspace, or
    all) by the sums of their day rows; `histograms`: the histogram rollups' too. The caller
    holds what keeps other writers of these rows out (on PostgreSQL the compaction lock: rows
    still staged in deltas reach day and week rows together later)."""
    params: dict[str, Any] = {"w0": w0, "w1": w1}
    if workspace_id is not None:
        params["ws"] = workspace_id

    def weeks(alias: str) -> str:
        scope = f" AND {alias}workspace_id = :ws" if workspace_id is not None else ""
        return f"{alias}period >= :w0 AND {alias}period < :w1{scope}"

    for rollup in [*ROLLUPS, *(HISTOGRAM_ROLLUPS if histograms else ())]:
        if "w" in rollup.grains:
            await conn.execute(text(f"DELETE FROM {rollup.table('w')} WHERE {weeks('')}"), params)
    for statement in weeks_from_days_statements(dialect, weeks("src.")):
        await conn.execute(text(statement), params)
    if histograms:
        await weeks_from_days(SqlAlchemyRunner(conn), w0, w1, workspace_id)


async def rebuild(
    db: Database,
    start: datetime,
    end: datetime,
    workspace_id: int | None = None,
    sessions: bool = False,
) -> RebuildReport:
    """Recompute every rollup over [start, end) widened to whole UTC days; with `sessions`,
    also recompute all sessions of the workspace (or of every workspace)."""
    start, end = day_floor(start), day_ceil(end)
    dialect = db.dialect
    bounds = {"start": stored_time(dialect, start), "end": stored_time(dialect, end)}
    period = {"p0": int(start.timestamp()), "p1": int(end.timestamp())}
    week_bounds = {
        "w0": grain_start("w", period["p0"]),
        "w1": grain_start("w", period["p1"] + WEEK - 1),
    }
    where_ws = " AND workspace_id = :ws" if workspace_id is not None else ""
    params = {"ws": workspace_id} if workspace_id is not None else {}
    source = f"(SELECT * FROM events WHERE ts >= :start AND ts < :end{where_ws})"
    async with db.write() as conn:
        if dialect.concurrent_writes:
            # no compaction meanwhile; tables in the order the writer takes them (sessions,
            # then the deltas, in one statement, in the order of DELTA_TABLES)
            await hold(conn, Lock.COMPACTION)
            tables = [
                *(["session_models", "sessions"] if sessions else []),
                *DELTA_TABLES,
                *_summary_tables(),
            ]
            await conn.execute(text(f"LOCK TABLE {', '.join(tables)} IN SHARE ROW EXCLUSIVE MODE"))
            await conn.execute(text("SET LOCAL work_mem = '256MB'"))
        for table in [*_summary_tables(), *(DELTA_TABLES if dialect.staged_deltas else ())]:
            if not table.endswith("_w"):  # recompute_weeks clears those
                await conn.execute(
                    text(f"DELETE FROM {table} WHERE period >= :p0 AND period < :p1{where_ws}"),
                    {**period, **params},
                )
        # a day at a time: each aggregate stays small enough to hash in memory (a year of
        # events at once would be sorted on disk), and the day's rows are new (fresh)
        steps = rollup_steps(db.dialect, source, fresh=True, grains=("h", "d"))
        day = start
        while day < end:
            day_bounds = {
                "start": stored_time(dialect, day),
                "end": stored_time(dialect, day + DAY),
            }
            for step in steps:
                if isinstance(step, str):
                    await conn.execute(text(step), {**day_bounds, **params})
                else:
                    await step(SqlAlchemyRunner(conn), {**day_bounds, **params})
            day += DAY
        # the weeks the range touches, from their day rows (days outside the range included)
        await recompute_weeks(conn, db.dialect, week_bounds["w0"], week_bounds["w1"], workspace_id)
        # the rollups now say what the events say, in this transaction: readers' kept answers go
        if workspace_id is None:
            await bump_all(conn)
        else:
            await bump(conn, [workspace_id])
        if sessions:
            await stamp_workspace(conn, db.dialect, workspace_id)  # the days they leave
            ws_only = " WHERE workspace_id = :ws" if workspace_id is not None else ""
            for table in ("session_models", "sessions"):
                await conn.execute(text(f"DELETE FROM {table}{ws_only}"), params)
            all_events = f"(SELECT * FROM events{ws_only})"
            for statement in session_statements(db.dialect, all_events):
                await conn.execute(text(statement), params)
            await stamp_workspace(conn, db.dialect, workspace_id)  # and the days they reach
        count = (
            await conn.execute(
                text(f"SELECT count(*) FROM events WHERE ts >= :start AND ts < :end{where_ws}"),
                {**bounds, **params},
            )
        ).scalar_one()
    return RebuildReport(start, end, workspace_id, int(count), sessions)


async def rebuild_command(
    settings: Settings, start: str | None, end: str | None, workspace: str | None, sessions: bool
) -> RebuildReport:
    """`tallyql rollups rebuild`: parse the arguments, migrate, rebuild."""
    db = Database(settings.resolved_database_url)
    try:
        await upgrade(db)
        workspace_id = None
        async with db.read() as conn:
            if workspace is not None:
                workspace_id = await find_workspace(conn, workspace)
                if workspace_id is None:
                    raise ValueError(f"no workspace named {workspace!r}")
            first = (await conn.execute(select(func.min(events.c.ts)))).scalar_one()
        begin = parse_timestamp(start) if start else first or clock.now()
        finish = parse_timestamp(end) if end else clock.now() + timedelta(seconds=1)
        if begin >= finish:
            raise ValueError("--from must be before --to")
        return await rebuild(db, begin, finish, workspace_id, sessions)
    finally:
        await db.dispose()
