"""A policy's description as recorded on the blocked events of a window: the latest one for a
(policy id, policy name) pair, found through the partial index ix_events_ws_policy."""

from __future__ import annotations

from sqlalchemy import literal_column, select, union_all

from tallyql.engine.timerange import TimeWindow
from tallyql.storage.database import Database
from tallyql.storage.tables import events

Pair = tuple[str, str | None]


async def policy_descriptions(
    db: Database, workspace_id: int, window: TimeWindow, pairs: list[Pair]
) -> dict[Pair, str | None]:
    """One statement for every pair (each part reads one index entry)."""
    if not pairs:
        return {}
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
                e.ts >= window.start,
                e.ts < window.end,
            )
            .order_by(e.ts.desc())
            .limit(1)
            .subquery(f"p{i}")
        )
        parts.append(select(latest.c.i, latest.c.d))
    statement = parts[0] if len(parts) == 1 else union_all(*parts)
    async with db.read() as conn:
        found = {int(i): d for i, d in (await conn.execute(statement)).all()}
    return {pair: found.get(i) for i, pair in enumerate(pairs)}
