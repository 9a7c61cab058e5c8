"""Event builders and read-back helpers shared by the tests."""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import event, select

from tallyql import sketch
from tallyql.ingest.pricing import Pricer
from tallyql.ingest.service import IngestService
from tallyql.services import Services
from tallyql.storage.tables import events, session_models, sessions

REQUEST_IDS = """
query Ids($range: TimeRangeInput, $filter: EventFilter, $first: Int!, $after: String) {
  requests(range: $range, filter: $filter, first: $first, after: $after) {
    totalCount
    edges { cursor node { id } }
    pageInfo { hasNextPage endCursor }
  }
}
"""


def iso(value: datetime) -> str:
    """RFC 3339 with a Z offset."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def ago(**delta: float) -> str:
    return iso(datetime.now(UTC) - timedelta(**delta))


def llm(event_id: str, **fields: Any) -> dict[str, Any]:
    """A valid llm_call event (five minutes ago, gpt-4o-mini) with the given fields on top."""
    event: dict[str, Any] = {
        "id": event_id,
        "timestamp": ago(minutes=5),
        "provider": "openai",
        "model": "gpt-4o-mini",
        "input_tokens": 100,
        "output_tokens": 20,
    }
    event.update(fields)
    return event


async def all_ids(api: Any, key: str, *, filter: dict[str, Any] | None = None, **kw: Any) -> list:
    """Every id the request log lists for a filter (and range), paging 100 at a time."""
    ids: list[str] = []
    after = None
    total = None
    while True:
        data = await api.data(
            key,
            REQUEST_IDS,
            {"filter": filter, "first": 100, "after": after, "range": kw.get("range")},
        )
        page = data["requests"]
        total = page["totalCount"]
        ids += [e["node"]["id"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert total == len(ids), (total, len(ids))
    return ids


async def total_count(api: Any, key: str) -> int:
    data = await api.data(key, "{ requests { totalCount } }")
    return data["requests"]["totalCount"]


async def event_rows(services: Services, workspace_id: int | None = None) -> list[dict[str, Any]]:
    query = select(events)
    if workspace_id is not None:
        query = query.where(events.c.workspace_id == workspace_id)
    async with services.db.read() as conn:
        return [dict(r) for r in (await conn.execute(query)).mappings()]


async def session_rows(services: Services) -> dict[str, dict[str, Any]]:
    async with services.db.read() as conn:
        rows = (await conn.execute(select(sessions))).mappings().all()
    return {r["id"]: dict(r) for r in rows}


async def session_model_rows(services: Services) -> dict[tuple[str, str, str], dict[str, Any]]:
    async with services.db.read() as conn:
        rows = (await conn.execute(select(session_models))).mappings().all()
    return {(r["session_id"], r["provider"], r["model"]): dict(r) for r in rows}


async def workspace_id_of(services: Services, key: str) -> int:
    principal = await services.keys.authenticate(key)
    assert principal is not None
    return principal.workspace_id


_COUNTING: ContextVar[bool] = ContextVar("counting_statements", default=False)


def valid_records(events: list[dict[str, Any]], received_at: datetime) -> list[list[Any]]:
    """The events-table records ingest makes of `events` (workspace 7), all of them valid."""
    service = IngestService(None, Pricer())  # type: ignore[arg-type]
    valid, errors = service.prepare(7, events, received_at)
    assert not errors
    return [e.record for e in valid]


@contextmanager
def counting_statements(services: Services) -> Iterator[list[str]]:
    """The SQL statements this task runs inside the block (background jobs share the engines
    but run in tasks of their own, so theirs are not counted)."""
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if _COUNTING.get():
            statements.append(statement)

    engines = {services.db.reader.sync_engine, services.db.writer.sync_engine}
    for engine in engines:
        event.listen(engine, "before_cursor_execute", count)
    token = _COUNTING.set(True)
    try:
        yield statements
    finally:
        _COUNTING.reset(token)
        for engine in engines:
            event.remove(engine, "before_cursor_execute", count)


async def planned_and_exact_percentile(
    services: Services,
    key: str,
    start: datetime,
    end: datetime,
    q: float,
    where: dict[str, Any] | None = None,
) -> tuple[float | None, float | None]:
    """From the workspace's stored events in [start, end) (those whose columns hold the values
    `where` gives, None included): the
    latency q-percentile the planned path must answer exactly (the DDSketch estimate from the
    events' stored buckets, interpolated between the closest ranks), and the exact one the raw
    path must answer (NumPy's linear interpolation of the values)."""
    workspace_id = await workspace_id_of(services, key)
    chosen = [
        r
        for r in await event_rows(services, workspace_id)
        if start <= r["ts"] < end
        and r["latency_ms"] is not None
        and all(r[column] == value for column, value in (where or {}).items())
    ]
    if not chosen:
        return None, None
    buckets = Counter(int(r["latency_bucket"]) for r in chosen)
    exact = float(np.quantile([r["latency_ms"] for r in chosen], q, method="linear"))
    return sketch.quantile(buckets, q), exact


def check_planned_against_raw(
    planned: dict[str, Any],
    raw: dict[str, Any],
    percentiles: dict[tuple[Any, ...], tuple[float | None, float | None]],
) -> None:
    """Planned and raw answers agree on every figure; at each percentile's path (keys and
    list indices into the data) the planned one is the sketch estimate, the raw one exact,
    given as (estimate, exact), the estimate within 1 % of the exact value."""

    def at(data: Any, path: tuple[Any, ...]) -> Any:
        for step in path:
            data = data[step]
        return data

    planned, raw = copy.deepcopy(planned), copy.deepcopy(raw)
    for path, (estimate, exact) in percentiles.items():
        got_planned, got_raw = at(planned, path), at(raw, path)
        assert got_planned == estimate, (path, got_planned, estimate)
        assert got_raw == (None if exact is None else pytest.approx(exact, rel=1e-12)), path
        if estimate is not None and exact is not None:
            assert abs(estimate - exact) <= 0.01 * exact + 1e-6, path
        *head, last = path
        at(planned, tuple(head))[last] = at(raw, tuple(head))[last] = None
    assert planned == raw


async def walk_pages(
    api: Any, key: str, field: str, selection: str, arguments: str = "", first: int = 1
) -> list[dict[str, Any]]:
    """Every node of a connection, `first` at a time through `after`, checking on the way that
    each page's endCursor is its last edge's cursor, the total stays the same and the walk
    ends (a cursor that repeated would loop: the walk is bounded)."""
    query = f"""query($first: Int!, $after: String) {{
      {field}(first: $first, after: $after{arguments}) {{
        totalCount pageInfo {{ hasNextPage endCursor }} edges {{ cursor node {{ {selection} }} }}
      }} }}"""
    nodes: list[dict[str, Any]] = []
    after = None
    total = None
    for _ in range(1000):
        page = (await api.data(key, query, {"first": first, "after": after}))[field]
        total = page["totalCount"] if total is None else total
        assert page["totalCount"] == total
        assert 0 < len(page["edges"]) <= first or total == 0
        nodes += [edge["node"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            assert len(nodes) == total
            return nodes
        after = page["pageInfo"]["endCursor"]
        assert after == page["edges"][-1]["cursor"]
    raise AssertionError(f"{field}: paging did not end")


def all_routes(routes: list[Any]) -> Iterator[Any]:
    """Every route of an app, included routers walked (none of them has a prefix)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from all_routes(included.routes)
        else:
            yield route
