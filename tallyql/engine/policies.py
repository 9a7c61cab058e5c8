"""A policy's description as recorded on the blocked events of a window: the latest one for a
(policy id, policy name) pair, found through the partial index ix_events_ws_policy.

The window's last day is looked at first, and the rest of the window only for the pairs that
did not block anything that day: a statement over a few day partitions is planned in a
fraction of a millisecond, one over a quarter's partitions in several milliseconds per pair
(PostgreSQL plans each partition's index scan), and a policy in use blocked something lately.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import literal_column, select, union_all

from tallyql.engine.query.timerange import TimeWindow
from tallyql.storage.database import Database
from tallyql.storage.tables import events

Pair = tuple[str, str | None]
RECENT = timedelta(days=1)


async def policy_descriptions(
    db: Database, workspace_id: int, window: TimeWindow, pairs: list[Pair]
) -> dict[Pair, str | None]:
    """One statement for every pair (each part reads one index entry), or two."""
    if not pairs:
        return {}
    split = max(window.start, window.end - RECENT)
    found = await _latest(db, workspace_id, split, window.end, pairs)
    rest = [pair for pair in pairs if pair not in found]
    if rest and split > window.start:
        found |= await _latest(db, workspace_id, window.start, split, rest)
    return {pair: found.get(pair) for pair in pairs}


async def _latest(
    db: Database, workspace_id: int, start: datetime, end: datetime, pairs: list[Pair]
) -> dict[Pair, str | None]:
    """The latest description of each pair that blocked something in [start, end)."""
    e = events.c
    parts = []
    for i, (policy_id, name) in enumerate(pairs):
        latest = (
            select(literal_column(str(i)).label("i"), e.policy_description.label("d"))
            .where(
                e.workspace_id == workspace_id,
                e.policy_id == policy_id,
                e.policy_name.is_(None) if name is None else e.policy_name == name,
                e.status == "blocked",
                e.ts >= start,
                e.ts < end,
            )
            .order_by(e.ts.desc())
            .limit(1)
            .subquery(f"p{i}")
        )
        parts.append(select(latest.c.i, latest.c.d))
    statement = parts[0] if len(parts) == 1 else union_all(*parts)
    async with db.read() as conn:
        return {pairs[int(i)]: d for i, d in (await conn.execute(statement)).all()}
