"""Recomputes the stored cost of events after prices changed, then fixes what sums them.

Only events whose cost tallyql computed (cost_source computed) or could not compute (unpriced)
are repriced; a cost the caller provided is never touched. The work goes in bounded batches in
(ts, id) order, each its own short write transaction: read the batch, price it with the current
prices, update the events whose cost changed, and add the differences to their sessions and
session models (additive, so exact). On PostgreSQL each batch takes an advisory lock, so two
repricings (on any replica) never apply the same difference twice. At the end the rollups of
every UTC day that changed are rebuilt from raw events (`rebuild`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, bindparam, literal, select, tuple_, update

from tallyql.storage.data_versions import bump
from tallyql.storage.database import Database
from tallyql.storage.dialect import Dialect
from tallyql.storage.locks import Lock, hold
from tallyql.storage.rollups.rebuild import day_floor, rebuild
from tallyql.storage.rollups.session_versions import stamp_sessions
from tallyql.storage.tables import EVENT_TOKEN_COLUMNS, events, session_models, sessions

REPRICEABLE = ("computed", "unpriced")
DEFAULT_BATCH = 2_000

Pricing = Callable[[int, dict[str, Any]], "int | None"]
"""(workspace id, event row) -> nano-USD, or None when the model has no price."""


@dataclass
class RepriceReport:
    scanned: int = 0
    changed: int = 0
    newly_priced: int = 0
    newly_unpriced: int = 0
    still_unpriced: int = 0
    delta_nanousd: int = 0
    batches: int = 0
    days: list[date] = field(default_factory=list)


def _day_runs(days: set[date]) -> list[tuple[date, date]]:
    """Contiguous runs of days as [first, last] pairs."""
    runs: list[tuple[date, date]] = []
    for day in sorted(days):
        if runs and runs[-1][1] + timedelta(days=1) == day:
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs


_COLUMNS = (
    events.c.id,
    events.c.ts,
    events.c.provider,
    events.c.model,
    events.c.session_id,
    *(events.c[c] for c in EVENT_TOKEN_COLUMNS),
    events.c.cost_nanousd,
    events.c.cost_source,
)

_UPDATE_EVENT = (
    update(events)
    .where(
        events.c.workspace_id == bindparam("ws"),
        events.c.id == bindparam("eid"),
        events.c.ts == bindparam("ets"),
    )
    .values(cost_nanousd=bindparam("cost"), cost_source=bindparam("source"))
)
_UPDATE_SESSION = (
    update(sessions)
    .where(sessions.c.workspace_id == bindparam("ws"), sessions.c.id == bindparam("sid"))
    .values(cost_nanousd=sessions.c.cost_nanousd + bindparam("delta"))
)
_UPDATE_SESSION_MODEL = (
    update(session_models)
    .where(
        session_models.c.workspace_id == bindparam("ws"),
        session_models.c.session_id == bindparam("sid"),
        session_models.c.provider == bindparam("prov"),
        session_models.c.model == bindparam("mod"),
    )
    .values(cost_nanousd=session_models.c.cost_nanousd + bindparam("delta"))
)


async def reprice_events(
    db: Database,
    price: Pricing,
    workspace_id: int,
    start: datetime,
    end: datetime,
    cost_sources: Sequence[str],
    matching: Sequence[ColumnElement[bool]],
    batch_size: int = DEFAULT_BATCH,
) -> RepriceReport:
    """Reprice a workspace's events in [start, end) whose cost source is among `cost_sources`
    (all when empty) and which match every one of `matching` (the caller's event filter as
    conditions on `events`)."""
    report = RepriceReport()
    sources = [s for s in REPRICEABLE if not cost_sources or s in cost_sources]
    if not sources:
        return report
    conditions = [
        events.c.workspace_id == workspace_id,
        events.c.ts >= start,
        events.c.ts < end,
        events.c.model.is_not(None),
        events.c.cost_source.in_(sources),
        *matching,
    ]
    days: set[date] = set()
    after: tuple[datetime, str] | None = None
    while True:
        query = select(*_COLUMNS).where(*conditions)
        if after is not None:
            query = query.where(
                tuple_(events.c.ts, events.c.id)
                > tuple_(literal(after[0], events.c.ts.type), literal(after[1], events.c.id.type))
            )
        query = query.order_by(events.c.ts, events.c.id).limit(batch_size)
        async with db.write() as conn:
            await hold(conn, Lock.REPRICE)
            rows = [dict(r) for r in (await conn.execute(query)).mappings()]
            if not rows:
                break
            after = (rows[-1]["ts"], rows[-1]["id"])
            changes = _price_batch(rows, price, workspace_id, report)
            if changes:
                await _apply(conn, workspace_id, changes)
                days.update(day_floor(r["ts"]).date() for r, _, _ in changes)
        report.scanned += len(rows)
        report.batches += 1
        if len(rows) < batch_size:
            break
    for first, last in _day_runs(days):
        begin = datetime(first.year, first.month, first.day, tzinfo=UTC)
        finish = datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1)
        await rebuild(db, begin, finish, workspace_id, sessions=False)
    report.days = sorted(days)
    return report


def _price_batch(
    rows: list[dict[str, Any]], price: Pricing, workspace_id: int, report: RepriceReport
) -> list[tuple[dict[str, Any], int, str]]:
    changes = []
    for row in rows:
        nano = price(workspace_id, row)
        source = "unpriced" if nano is None else "computed"
        cost = nano or 0
        if source == "unpriced" and row["cost_source"] == "unpriced":
            report.still_unpriced += 1
        if cost == row["cost_nanousd"] and source == row["cost_source"]:
            continue
        if row["cost_source"] == "unpriced" and source == "computed":
            report.newly_priced += 1
        elif row["cost_source"] == "computed" and source == "unpriced":
            report.newly_unpriced += 1
        report.changed += 1
        report.delta_nanousd += cost - row["cost_nanousd"]
        changes.append((row, cost, source))
    return changes


async def _apply(
    conn: Any, workspace_id: int, changes: list[tuple[dict[str, Any], int, str]]
) -> None:
    await conn.execute(
        _UPDATE_EVENT,
        [
            {"ws": workspace_id, "eid": r["id"], "ets": r["ts"], "cost": cost, "source": source}
            for r, cost, source in changes
        ],
    )
    await bump(conn, [workspace_id])  # raw reads see the new costs as this commits
    by_session: dict[str, int] = defaultdict(int)
    by_model: dict[tuple[str, str, str], int] = defaultdict(int)
    for row, cost, _ in changes:
        if row["session_id"] is None:
            continue
        delta = cost - row["cost_nanousd"]
        by_session[row["session_id"]] += delta
        by_model[(row["session_id"], row["provider"] or "", row["model"] or "")] += delta
    session_params: list[dict[str, Any]] = [
        {"ws": workspace_id, "sid": sid, "delta": d} for sid, d in sorted(by_session.items()) if d
    ]
    if session_params:
        await conn.execute(_UPDATE_SESSION, session_params)
        await stamp_sessions(
            conn, Dialect.of(conn), workspace_id, [p["sid"] for p in session_params]
        )
    model_params = [
        {"ws": workspace_id, "sid": sid, "prov": prov, "mod": mod, "delta": d}
        for (sid, prov, mod), d in sorted(by_model.items())
        if d
    ]
    if model_params:
        await conn.execute(_UPDATE_SESSION_MODEL, model_params)


__all__ = ["REPRICEABLE", "RepriceReport", "reprice_events"]
