"""The workspace's own values that questions may name: models, providers, users, groups,
agents, tools, MCP servers and gateways, for the question interpreter (`interpret.py`).

Read from the rollups over the last 90 days (five fixed-shape questions, not metered: they
are the interpreter's dictionary, not the caller's question) plus the directory's groups and
user names, and kept per workspace for `TTL_SECONDS`, so that a burst of questions pays once.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import timedelta

from sqlalchemy import select

from tallyql.clock import clock
from tallyql.engine.analytics import Asker, custom_query
from tallyql.engine.interpret import KnownValues, KnownValuesKey
from tallyql.engine.query.filters import NO_FILTER
from tallyql.engine.query.registry import Dimension, DimensionRef, Metric
from tallyql.engine.query.timerange import TimeWindow
from tallyql.storage.tables import groups, users

TTL_SECONDS = 60.0
LOOKBACK = timedelta(days=90)
MAX_VALUES = 2_000
"""Values read per question; a workspace with more users than this names the busiest."""

_CACHE: dict[tuple[int, ...] | None, tuple[float, KnownValuesKey]] = {}
_LOCKS: dict[tuple[int, ...] | None, asyncio.Lock] = {}

_QUESTIONS: tuple[tuple[tuple[Dimension, ...], tuple[str, ...]], ...] = (
    ((Dimension.PROVIDER, Dimension.MODEL), ("providers", "models")),
    ((Dimension.USER,), ("users",)),
    ((Dimension.AGENT,), ("agents",)),
    ((Dimension.TOOL, Dimension.MCP_SERVER), ("tools", "mcpServers")),
    ((Dimension.GATEWAY,), ("gateways",)),
)


async def known_values(asker: Asker) -> KnownValuesKey:
    """The asker's workspace's values, cached for `TTL_SECONDS`."""
    key = asker.scope.workspace_ids
    found = _CACHE.get(key)
    if found is not None and time.monotonic() - found[0] < TTL_SECONDS:
        return found[1]
    lock = _LOCKS.setdefault(key, asyncio.Lock())
    async with lock:
        found = _CACHE.get(key)
        if found is not None and time.monotonic() - found[0] < TTL_SECONDS:
            return found[1]
        values = await _read(asker)
        _CACHE[key] = (time.monotonic(), values)
        return values


def forget(workspace_ids: tuple[int, ...] | None = None) -> None:
    """Drop cached values (all, or one scope's): tests that load new values use it."""
    if workspace_ids is None:
        _CACHE.clear()
    else:
        _CACHE.pop(workspace_ids, None)


async def _read(asker: Asker) -> KnownValuesKey:
    now = clock.now()
    window = TimeWindow(now - LOOKBACK, now, asker.window.tz)
    plain = replace(
        asker, window=window, filter=NO_FILTER, meter=None, plans=[], explain=False, force_raw=False
    )
    answers = await asyncio.gather(
        *(
            custom_query(
                plain,
                (Metric.REQUESTS,),
                tuple(DimensionRef(d) for d in dims),
                None,
                [(Metric.REQUESTS, True)],
                MAX_VALUES,
            )
            for dims, _ in _QUESTIONS
        )
    )
    found: dict[str, dict[str, None]] = {}
    for (_, fields), answer in zip(_QUESTIONS, answers, strict=True):
        for row in answer.rows:
            for name, value in zip(fields, row.keys, strict=True):
                if isinstance(value, str) and value:
                    found.setdefault(name, {})[value] = None
    names: dict[str, str] = {}
    ids = asker.scope.workspace_ids
    async with asker.db.read() as conn:
        query = select(groups.c.name)
        people = select(users.c.display_name, users.c.id).where(users.c.display_name.is_not(None))
        if ids is not None:
            query = query.where(groups.c.workspace_id.in_(ids))
            people = people.where(users.c.workspace_id.in_(ids))
        for (name,) in (await conn.execute(query.limit(MAX_VALUES))).all():
            found.setdefault("groups", {})[name] = None
        for display, uid in (await conn.execute(people.limit(MAX_VALUES))).all():
            names[display] = uid
            found.setdefault("users", {})[uid] = None
    return KnownValuesKey.of(KnownValues({k: tuple(v) for k, v in found.items()}, user_names=names))
