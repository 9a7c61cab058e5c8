"""The workspace's own values that questions may name: models, providers, users, groups,
agents, tools, MCP servers and gateways, for the question interpreter (`interpret.py`).

Read from the rollups over the last 90 days (five fixed-shape questions, not metered: they
are the interpreter's dictionary, not the caller's question) plus the directory's groups and
user names and the metadata keys of its latest events, and kept per workspace for
`TTL_SECONDS` (or while its data version holds), so that a burst of questions pays once.
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
from tallyql.storage.tables import events, groups, users

TTL_SECONDS = 60.0
LOOKBACK = timedelta(days=90)
MAX_VALUES = 2_000
"""Values read per question; a workspace with more users than this names the busiest."""
METADATA_SAMPLE = 1_000
"""Metadata keys are those of the workspace's latest events (the (workspace_id, ts) index
reads them; every event's keys would be a scan of the whole table)."""

_CACHE: dict[tuple[int, ...] | None, tuple[float, int | None, KnownValuesKey]] = {}
_LOCKS: dict[tuple[int, ...] | None, asyncio.Lock] = {}

_QUESTIONS: tuple[tuple[tuple[Dimension, ...], tuple[str, ...]], ...] = (
    ((Dimension.PROVIDER, Dimension.MODEL), ("providers", "models")),
    ((Dimension.USER,), ("users",)),
    ((Dimension.AGENT,), ("agents",)),
    ((Dimension.TOOL, Dimension.MCP_SERVER), ("tools", "mcpServers")),
    ((Dimension.GATEWAY,), ("gateways",)),
)


async def known_values(asker: Asker, version: int | None = None) -> KnownValuesKey:
    """The asker's workspace's values, cached for `TTL_SECONDS`; given the workspace's data
    version (storage/data_versions.py), values read at another version are read again."""
    key = asker.scope.workspace_ids

    def fresh(found: tuple[float, int | None, KnownValuesKey] | None) -> bool:
        return (
            found is not None
            and time.monotonic() - found[0] < TTL_SECONDS
            and (version is None or found[1] == version)
        )

    found = _CACHE.get(key)
    if fresh(found):
        assert found is not None
        return found[2]
    lock = _LOCKS.setdefault(key, asyncio.Lock())
    async with lock:
        found = _CACHE.get(key)
        if fresh(found):
            assert found is not None
            return found[2]
        values = await _read(asker)
        _CACHE[key] = (time.monotonic(), version, values)
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
        recent = select(events.c.metadata).where(events.c.metadata.is_not(None))
        if ids is not None:
            recent = recent.where(events.c.workspace_id.in_(ids))
        recent = recent.order_by(events.c.ts.desc()).limit(METADATA_SAMPLE)
        keys: dict[str, None] = {}
        for (metadata,) in (await conn.execute(recent)).all():
            if isinstance(metadata, dict):
                keys.update(dict.fromkeys(k for k in metadata if isinstance(k, str) and k))
    return KnownValuesKey.of(
        KnownValues(
            {k: tuple(v) for k, v in found.items()},
            user_names=names,
            metadata_keys=tuple(sorted(keys)[:MAX_VALUES]),
        )
    )
