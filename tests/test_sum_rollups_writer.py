"""The sum rollups, sessions and session models hold what an independent recomputation from
the raw events gives, row for row and sum for sum: after batches whose events are spread over
nine days (so that each batch merges into hour, day and week rows earlier batches wrote, across
a week edge) in several workspaces, and again after a rebuild from raw events. The
recomputation is plain Python over the events as stored: every rollup kept on the database, at
every grain, keyed as declared (absent text as '', absent status codes as -1, one row per tag
and '' for untagged events). Counts, tokens, costs, bytes and maxima must be equal; latency and
TTFT sums (floats, added in another order) within 1e-6 ms, well under the 0.1 ms an event's
latency could add."""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, text

from tallyql.demo.generator import generate_batches
from tallyql.storage.dialect import Dialect
from tallyql.storage.rollups.compaction import compact
from tallyql.storage.rollups.declarations import (
    INT_DIMS,
    MAX_MEASURES,
    ROLLUPS,
    SUM_MEASURES,
    TAG,
    WEEK,
    grain_start,
)
from tallyql.storage.rollups.rebuild import rebuild
from tallyql.storage.tables import EVENT_TOKEN_COLUMNS, session_models, sessions
from tallyql.storage.tables import events as events_table
from tests.conftest import Api

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
END = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
DAYS = 9  # always crosses a Monday 00:00 UTC: rows of two weeks at least
WORKSPACES = ("acme", "globex", "initech")
BATCH = 120
TOLERANCE = 1e-6  # ms, for the float sums

Key = tuple[Any, ...]
Rows = dict[str, dict[Key, list[Any]]]
SUMS = [c for c, _ in SUM_MEASURES]
FLOAT_SUMS = {"latency_sum", "ttft_sum", "latency_ms_sum"}


def _measures(e: dict[str, Any]) -> list[Any]:
    """An event's row measures, in the order of SUM_MEASURES then MAX_MEASURES."""
    latency, ttft = e["latency_ms"], e["ttft_ms"]
    by_name = {
        "requests": 1,
        "errors": int(e["status"] == "error"),
        "blocked": int(e["status"] == "blocked"),
        **{c: e[c] for c in EVENT_TOKEN_COLUMNS},
        "cost_nanousd": e["cost_nanousd"],
        "latency_sum": latency or 0.0,
        "latency_count": int(latency is not None),
        "ttft_sum": ttft or 0.0,
        "ttft_count": int(ttft is not None),
        "request_bytes": e["request_bytes"] or 0,
        "response_bytes": e["response_bytes"] or 0,
    }
    assert list(by_name) == SUMS and [c for c, _ in MAX_MEASURES] == ["latency_max"]
    return [*by_name.values(), latency]


def _dim(e: dict[str, Any], dim: str) -> list[Any]:
    """The key values of an event for `dim` (several for the tags)."""
    if dim == TAG:
        return list(e["tags"]) or [""]
    if e[dim] is None:
        return [INT_DIMS.get(dim, "")]
    return [e[dim]]


def _keys(e: dict[str, Any], dims: Iterable[str]) -> list[tuple[Any, ...]]:
    keys: list[tuple[Any, ...]] = [()]
    for dim in dims:
        keys = [(*k, v) for k in keys for v in _dim(e, dim)]
    return keys


def _fold(rows: dict[Key, list[Any]], key: Key, measures: list[Any]) -> None:
    """Add an event's measures to a row: sums add (floats exactly, with fsum's partials
    kept as lists), the maximum merges."""
    row = rows.get(key)
    if row is None:
        row = rows[key] = [[] if c in FLOAT_SUMS else 0 for c in SUMS] + [None]
    for i, (c, v) in enumerate(zip(SUMS, measures, strict=False)):
        if c in FLOAT_SUMS:
            row[i].append(v)
        else:
            row[i] += v
    latency = measures[-1]
    if latency is not None:
        row[-1] = latency if row[-1] is None else max(row[-1], latency)


def _exact(rows: dict[Key, list[Any]]) -> dict[Key, list[Any]]:
    return {k: [math.fsum(v) if isinstance(v, list) else v for v in r] for k, r in rows.items()}


async def _events(api: Api) -> list[dict[str, Any]]:
    async with api.services.db.read() as conn:
        result = await conn.execute(select(events_table))
        return [dict(r._mapping) for r in result.all()]


def _expected_rollups(events: list[dict[str, Any]], dialect: Dialect) -> Rows:
    out: Rows = {}
    for rollup in ROLLUPS:
        if not rollup.kept_on(dialect):
            continue
        for grain in rollup.grains:
            rows: dict[Key, list[Any]] = {}
            for e in events:
                period = grain_start(grain, (e["ts"] - EPOCH) // timedelta(seconds=1))
                for dims in _keys(e, rollup.dims):
                    _fold(rows, (e["workspace_id"], period, *dims), _measures(e))
            out[rollup.table(grain)] = _exact(rows)
    return out


def _expected_sessions(events: list[dict[str, Any]], first_batch: dict[Key, int]) -> Rows:
    """sessions (sums, first and last timestamps, and user and agent: a batch's smallest,
    from the first batch that had one) and session_models (sums)."""
    by_session: dict[Key, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        if e["session_id"] is not None:
            by_session[(e["workspace_id"], e["session_id"])].append(e)
    out: Rows = {"sessions": {}, "session_models": {}}
    names = ["requests", "errors", *EVENT_TOKEN_COLUMNS, "cost_nanousd"]
    for key, evs in by_session.items():
        totals = [sum(_measures(e)[SUMS.index(c)] for e in evs) for c in names]
        latency = math.fsum(e["latency_ms"] or 0.0 for e in evs)
        firsts = []
        for column in ("user_id", "agent_id"):
            batches = sorted(first_batch[(e["workspace_id"], e["id"])] for e in evs if e[column])
            firsts.append(
                None
                if not batches
                else min(
                    e[column]
                    for e in evs
                    if e[column] and first_batch[(e["workspace_id"], e["id"])] == batches[0]
                )
            )
        times = [e["ts"] for e in evs]
        out["sessions"][key] = [*totals, latency, min(times), max(times), *firsts]
        by_model: dict[Key, list[dict[str, Any]]] = defaultdict(list)
        for e in evs:
            by_model[(*key, e["provider"] or "", e["model"] or "")].append(e)
        for model_key, mevs in by_model.items():
            out["session_models"][model_key] = [
                *(sum(_measures(e)[SUMS.index(c)] for e in mevs) for c in names),
                math.fsum(e["latency_ms"] or 0.0 for e in mevs),
                sum(e["latency_ms"] is not None for e in mevs),
            ]
    return out


async def _stored_rollups(api: Api, tables: list[str]) -> Rows:
    out: Rows = {}
    async with api.services.db.read() as conn:
        for table in tables:
            rows = (await conn.execute(text(f"SELECT * FROM {table}"))).all()
            width = len(rows[0]) - len(SUMS) - 1 if rows else 0
            out[table] = {tuple(r[:width]): list(r[width:]) for r in rows}
    return out


async def _stored_sessions(api: Api) -> Rows:
    names = ["requests", "errors", *EVENT_TOKEN_COLUMNS, "cost_nanousd", "latency_ms_sum"]
    async with api.services.db.read() as conn:
        s_rows = (
            await conn.execute(
                select(
                    sessions.c.workspace_id,
                    sessions.c.id,
                    *(sessions.c[c] for c in names),
                    sessions.c.first_ts,
                    sessions.c.last_ts,
                    sessions.c.user_id,
                    sessions.c.agent_id,
                )
            )
        ).all()
        m_rows = (
            await conn.execute(
                select(
                    *(session_models.c[c] for c in ("workspace_id", "session_id")),
                    session_models.c.provider,
                    session_models.c.model,
                    *(session_models.c[c] for c in (*names, "latency_count")),
                )
            )
        ).all()
    return {
        "sessions": {tuple(r[:2]): list(r[2:]) for r in s_rows},
        "session_models": {tuple(r[:4]): list(r[4:]) for r in m_rows},
    }


def _assert_equal(stored: Rows, expected: Rows, float_columns: dict[str, set[int]]) -> None:
    """Every table has exactly the expected keys, and each row the expected values (floats
    at the positions `float_columns` names within TOLERANCE)."""
    assert sorted(stored) == sorted(expected)
    for table, rows in expected.items():
        assert set(stored[table]) == set(rows), table
        floats = float_columns[table]
        for key, values in rows.items():
            got = stored[table][key]
            assert len(got) == len(values), (table, key)
            for i, (g, v) in enumerate(zip(got, values, strict=True)):
                if i in floats:
                    assert abs(g - v) <= TOLERANCE, (table, key, i, g, v)
                else:
                    assert g == v, (table, key, i, g, v)


async def test_sum_rollups_and_sessions_equal_a_recomputation_from_raw_events(api: Api) -> None:
    dialect = api.services.db.dialect
    keys = [await api.key(w) for w in WORKSPACES]
    events = [e for b in generate_batches(2400, DAYS, seed=13, end=END) for e in b]
    random.Random(9).shuffle(events)  # every batch spans the nine days
    accepted = Counter[int]()
    batch_of: dict[tuple[int, str], int] = {}  # (workspace position, event id) -> batch
    for n, i in enumerate(range(0, len(events), BATCH)):
        batch = events[i : i + BATCH]
        # the first workspace gets every batch, the second one in two, the third one in three
        for w in (w for w, every in enumerate((1, 2, 3)) if n % every == 0):
            accepted[w] += (await api.ingest(keys[w], batch))["accepted"]
            batch_of.update(((w, e["id"]), n) for e in batch)
    assert accepted == {0: 2400, 1: 1200, 2: 840}
    if dialect.staged_deltas:
        await compact(api.services.db, wait=True)

    raw = await _events(api)
    assert len(raw) == 4440
    workspace_ids = sorted({e["workspace_id"] for e in raw})
    first_batch = {
        (e["workspace_id"], e["id"]): batch_of[(workspace_ids.index(e["workspace_id"]), e["id"])]
        for e in raw
    }
    expected = _expected_rollups(raw, dialect)
    tables = sorted(expected)
    assert len(tables) == 3 * sum(r.kept_on(dialect) for r in ROLLUPS)
    weeks = {k[1] for k in expected["rollup_totals_w"]}
    assert len(weeks) >= 2 and max(weeks) - min(weeks) >= WEEK
    # batches merge into rows earlier batches wrote: some hour row counts events of several
    merged = {k: v for k, v in expected["rollup_base_h"].items() if v[0] > 1}
    assert merged and len(expected["rollup_base_h"]) < len(raw)
    floats = {t: {SUMS.index("latency_sum"), SUMS.index("ttft_sum")} for t in tables}
    expected_sessions = _expected_sessions(raw, first_batch)
    assert len(expected_sessions["sessions"]) > 100
    session_floats = {"sessions": {8}, "session_models": {8}}  # latency_ms_sum

    _assert_equal(await _stored_rollups(api, tables), expected, floats)
    _assert_equal(await _stored_sessions(api), expected_sessions, session_floats)

    await rebuild(api.services.db, END - timedelta(days=DAYS + 1), END + timedelta(days=1))
    _assert_equal(await _stored_rollups(api, tables), expected, floats)
