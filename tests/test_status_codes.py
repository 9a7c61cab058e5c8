"""HTTP status codes: without `status`, 4xx/5xx are errors with the error type their code names;
the STATUS_CODE and STATUS_CLASS dimensions and the statusCodes filter, answered from rollups
and equal to raw events, on both ingest paths, GraphQL and OTLP."""

from __future__ import annotations

import importlib
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from alembic import command
from sqlalchemy import text

from tallyql.engine.query.filter_codec import spec_from_json, spec_to_json
from tallyql.engine.query.filters import EventFilterSpec
from tallyql.live.matcher import compile_matcher
from tallyql.schema.base.filter_output import filter_as_input
from tallyql.storage.migrate import _config, upgrade
from tallyql.storage.rollups.compaction import compact
from tests.conftest import Api
from tests.support.helpers import event_rows, iso, llm, workspace_id_of
from tests.support.live_support import live_row

# (status_code, status sent, error_type sent) -> (stored status, stored error_type), written
# out from the table rather than computed by the code under test
CASES: list[tuple[int | None, str | None, str | None, str, str | None]] = [
    (200, None, None, "success", None),
    (204, None, None, "success", None),
    (302, None, None, "success", None),
    (400, None, None, "error", "invalid_request"),
    (401, None, None, "error", "auth_error"),
    (403, None, None, "error", "auth_error"),
    (404, None, None, "error", "invalid_request"),
    (408, None, None, "error", "timeout"),
    (409, None, None, "error", "invalid_request"),
    (413, None, None, "error", "invalid_request"),
    (418, None, None, "error", "other"),
    (422, None, None, "error", "invalid_request"),
    (429, None, None, "error", "rate_limit"),
    (500, None, None, "error", "other"),
    (502, None, None, "error", "other"),
    (503, None, None, "error", "other"),
    (504, None, None, "error", "timeout"),
    (500, None, "model_error", "error", "model_error"),  # the caller's type wins
    (500, "success", None, "success", None),  # the caller's status wins
    (429, "error", None, "error", "rate_limit"),  # status sent, type from the code
    (403, "blocked", None, "blocked", "policy_blocked"),
    (None, None, None, "success", None),
]


def _events(prefix: str) -> list[dict[str, Any]]:
    out = []
    for i, (code, status, error_type, _, _) in enumerate(CASES):
        event: dict[str, Any] = {"id": f"{prefix}{i}", "kind": "http_request"}
        for name, value in (("status_code", code), ("status", status), ("error_type", error_type)):
            if value is not None:
                event[name] = value
        out.append(event)
    return out


def _check_stored(rows: list[dict[str, Any]], prefix: str) -> None:
    by_id = {r["id"]: r for r in rows}
    for i, (code, _, _, status, error_type) in enumerate(CASES):
        row = by_id[f"{prefix}{i}"]
        assert (row["status_code"], row["status"], row["error_type"]) == (
            code,
            status,
            error_type,
        ), i


async def test_rest_fast_and_detailed_paths_derive_the_status(api: Api) -> None:
    key = await api.key()
    fast = await api.ingest(key, _events("f"))
    assert fast["accepted"] == len(CASES)
    # one invalid event sends its batch down the detailed path; the others are accepted
    detailed = await api.ingest(key, [*_events("d"), {"id": "bad", "input_tokens": -1}])
    assert detailed["accepted"] == len(CASES) and detailed["rejected"] == 1
    rows = await event_rows(api.services, await workspace_id_of(api.services, key))
    _check_stored(rows, "f")
    _check_stored(rows, "d")


async def test_graphql_ingest_derives_the_status(api: Api) -> None:
    key = await api.key()
    mutation = """mutation($e: [EventInput!]!) { ingestEvents(events: $e) { accepted } }"""
    events = []
    for event in _events("g"):
        converted: dict[str, Any] = {"id": event["id"], "kind": "HTTP_REQUEST"}
        if "status_code" in event:
            converted["statusCode"] = event["status_code"]
        if "status" in event:
            converted["status"] = event["status"].upper()
        if "error_type" in event:
            converted["errorType"] = event["error_type"].upper()
        events.append(converted)
    data = await api.data(key, mutation, {"e": events})
    assert data["ingestEvents"]["accepted"] == len(CASES)
    _check_stored(await event_rows(api.services, await workspace_id_of(api.services, key)), "g")


@pytest.mark.parametrize("attribute", ["http.response.status_code", "http.status_code"])
async def test_otlp_span_status_code(api: Api, attribute: str) -> None:
    key = await api.key()
    start = time.time_ns() - 60_000_000_000
    spans = [
        {
            "traceId": "5b8efff798038103d269b633813fc60c",
            "spanId": f"00f067aa0ba902b{i}",
            "name": "chat",
            "startTimeUnixNano": str(start),
            "endTimeUnixNano": str(start + 1_000_000),
            "attributes": [
                {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
                {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o"}},
                {"key": attribute, "value": {"intValue": str(code)}},
            ],
        }
        for i, code in enumerate((200, 429, 503))
    ]
    body = {"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}
    response = await api.client.post(
        "/v1/traces",
        content=orjson.dumps(body),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    rows = await event_rows(api.services, await workspace_id_of(api.services, key))
    got = sorted((r["status_code"], r["status"], r["error_type"]) for r in rows)
    assert got == [(200, "success", None), (429, "error", "rate_limit"), (503, "error", "other")]


QUERY = """query($q: MetricsQueryInput!) {
  metrics(query: $q) { rows { keys values } }
}"""


async def _ask(
    api: Api, key: str, dims: list[str], spec: dict[str, Any] | None, raw: bool
) -> tuple[dict[tuple[Any, ...], list[Any]], list[dict[str, Any]]]:
    now = datetime.now(UTC)
    headers = {"Authorization": f"Bearer {key}", "X-Tallyql-Explain": "1"}
    if raw:
        headers["X-Tallyql-Plan"] = "raw"
    variables = {
        "q": {
            "metrics": ["REQUESTS", "ERRORS", "COST_USD"],
            "range": {"start": iso(now - timedelta(days=3)), "end": iso(now + timedelta(hours=1))},
            "dimensions": [{"dimension": d} for d in dims],
            "filter": spec,
        }
    }
    response = await api.client.post(
        "/graphql", json={"query": QUERY, "variables": variables}, headers=headers
    )
    body = response.json()
    assert "errors" not in body, body
    rows = {tuple(r["keys"]): r["values"] for r in body["data"]["metrics"]["rows"]}
    return rows, body["extensions"]["plans"]


def _status_class(code: int | None) -> str | None:
    return None if code is None else {2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}[code // 100]


async def test_dimensions_and_filter_from_rollups_equal_raw(api: Api) -> None:
    key = await api.key()
    now = datetime.now(UTC)
    codes = [200, 200, 201, 301, 404, 429, 429, 500, 503, None]
    events = [
        llm(
            f"e{i}",
            timestamp=iso(now - timedelta(hours=3 + 7 * i)),
            cost_usd=0.25 * (i + 1),
            **({"status_code": code} if code is not None else {}),
            **({"gateway": "gw"} if i % 2 else {}),
        )
        for i, code in enumerate(codes)
    ]
    assert (await api.ingest(key, events))["accepted"] == len(events)
    await compact(api.services.db, wait=True)
    expected_code: dict[tuple[Any, ...], list[Any]] = {}
    expected_class: dict[tuple[Any, ...], list[Any]] = {}
    for i, code in enumerate(codes):
        error = 1 if code is not None and code >= 400 else 0
        for table, k in (
            (expected_code, (None if code is None else str(code),)),
            (expected_class, (_status_class(code),)),
        ):
            row = table.setdefault(k, [0, 0, 0.0])
            row[0] += 1
            row[1] += error
            row[2] += 0.25 * (i + 1)
    for dims, want in ((["STATUS_CODE"], expected_code), (["STATUS_CLASS"], expected_class)):
        for raw in (False, True):
            got, plans = await _ask(api, key, dims, None, raw)
            assert got.keys() == want.keys(), (dims, raw)
            for k, values in want.items():
                assert got[k][:2] == values[:2] and got[k][2] == pytest.approx(values[2]), k
            assert plans[0]["source"] == ("raw" if raw else "rollup:models"), plans
    spec = {"statusCodes": [429, 500]}
    for raw in (False, True):
        got, plans = await _ask(api, key, [], spec, raw)
        assert got == {(): [3, 3, pytest.approx(0.25 * (6 + 7 + 8))]}
        assert plans[0]["source"] == ("raw" if raw else "rollup:models"), plans
    by_gateway = {"statusCodes": [200, 429]}
    got, plans = await _ask(api, key, ["GATEWAY", "STATUS_CODE"], by_gateway, False)
    assert plans[0]["source"] == "rollup:gateways"
    assert {k: v[0] for k, v in got.items()} == {
        (None, "200"): 1,
        ("gw", "200"): 1,
        ("gw", "429"): 1,
        (None, "429"): 1,
    }


MIGRATION = importlib.import_module("tallyql.storage.migrations.versions.0012_status_code_rollups")


async def test_migration_refill_equals_what_the_writer_keeps(api: Api) -> None:
    key = await api.key()
    start = datetime.now(UTC) - timedelta(days=20)
    events = [
        llm(
            f"m{i}",
            timestamp=iso(start + timedelta(minutes=137 * i)),
            latency_ms=5.0 + i,
            cost_usd=0.001 * i,
            status_code=(200, 404, 429, 500, 302)[i % 5],
            gateway=("a", "b")[i % 2],
            **({"api_key_id": "k"} if i % 3 else {}),
        )
        for i in range(200)
    ]
    for i in range(0, 200, 7):
        events[i].pop("status_code")
    assert (await api.ingest(key, events))["accepted"] == 200
    db = api.services.db
    await compact(db, wait=True)
    dialect = db.dialect
    for name, dims in MIGRATION.ROLLUPS:
        for grain in MIGRATION.GRAINS:
            table = f"rollup_{name}_{grain}"
            order = ", ".join(("workspace_id", "period", *dims))
            async with db.read() as conn:
                kept = (await conn.execute(text(f"SELECT * FROM {table} ORDER BY {order}"))).all()
            assert len({r.status_code for r in kept}) == 6, table  # five codes and -1
            async with db.write() as conn:
                # the first period is kept from the old table, the rest refilled from events
                first = min(r.period for r in kept)
                await conn.execute(text(f"DELETE FROM {table} WHERE period > {first}"))
                sql = MIGRATION.backfill_sql(dialect, table, dims, grain)
                await conn.execute(text(sql))
            async with db.read() as conn:
                filled = (await conn.execute(text(f"SELECT * FROM {table} ORDER BY {order}"))).all()
            assert filled == kept, table


def _downgrade(connection: Any, revision: str) -> None:
    command.downgrade(_config(connection), revision)


async def test_migration_round_trip_keeps_every_total(api: Api) -> None:
    """Down to 0011 (codes folded together) and up again: periods after the first event's are
    refilled with their codes, the first keeps its rows under -1; staged PostgreSQL deltas are
    compacted on the way, never lost."""
    key = await api.key()
    start = datetime.now(UTC) - timedelta(days=9)
    events = [
        llm(
            f"r{i}",
            timestamp=iso(start + timedelta(minutes=97 * i)),
            cost_usd=0.002 * i,
            status_code=(200, 404, 503)[i % 3],
        )
        for i in range(120)
    ]
    assert (await api.ingest(key, events))["accepted"] == 120
    db = api.services.db
    await compact(db, wait=True)
    names = [f"rollup_{n}_{g}" for n in ("models", "gateways", "totals") for g in "hdw"]

    async def snapshot() -> dict[str, dict[tuple[Any, ...], tuple[int, int]]]:
        out: dict[str, dict[tuple[Any, ...], tuple[int, int]]] = {}
        async with db.read() as conn:
            for table in names:
                rows = (await conn.execute(text(f"SELECT * FROM {table}"))).mappings().all()
                out[table] = {}
                for r in rows:
                    code = r.get("status_code")
                    k = (r["period"], code)
                    old = out[table].get(k, (0, 0))
                    out[table][k] = (old[0] + r["requests"], old[1] + r["cost_nanousd"])
        return out

    before = await snapshot()
    # a batch left staged (PostgreSQL) must be compacted, not dropped, by the migration
    late = llm("late", timestamp=iso(start + timedelta(days=8)), status_code=429, cost_usd=1.0)
    assert (await api.ingest(key, [late]))["accepted"] == 1
    async with db.write() as conn:
        await conn.run_sync(_downgrade, "0011_session_day_versions")
    await upgrade(db)
    after = await snapshot()
    late_ts = int((start + timedelta(days=8)).timestamp())
    first_ts = int(start.timestamp())
    for table in names:
        grain = table[-1]
        seconds, origin = MIGRATION.GRAINS[grain]
        first = (first_ts - origin) // seconds * seconds + origin
        late_p = (late_ts - origin) // seconds * seconds + origin
        want = dict(before[table])
        has_code = not table.startswith("rollup_totals")
        k = (late_p, 429 if has_code else None)
        old = want.get(k, (0, 0))
        want[k] = (old[0] + 1, old[1] + 1_000_000_000)
        if has_code:  # the first period's codes fold under -1
            folded = [k for k in want if k[0] == first]
            total = (sum(want[k][0] for k in folded), sum(want[k][1] for k in folded))
            for k in folded:
                del want[k]
            want[(first, -1)] = total
        assert after[table] == want, table


def test_status_codes_survive_stored_filters_and_match_live_rows() -> None:
    spec = EventFilterSpec(status_codes=(429, 503), kinds=("http_request",))
    stored = spec_to_json(spec)
    assert stored == {"kinds": ["http_request"], "status_codes": [429, 503]}
    assert spec_from_json(orjson.loads(orjson.dumps(stored))) == spec
    assert filter_as_input(spec) == {"kinds": ["HTTP_REQUEST"], "statusCodes": [429, 503]}
    matcher = compile_matcher(EventFilterSpec(status_codes=(429,)))
    assert [matcher(live_row(status_code=c)) for c in (429, 500, None)] == [True, False, False]


async def test_export_takes_status_codes(api: Api) -> None:
    key = await api.key()
    events = [llm(f"x{i}", status_code=code) for i, code in enumerate((200, 429, 429, 500))]
    events.append(llm("x-none"))
    assert (await api.ingest(key, events))["accepted"] == 5
    headers = {"Authorization": f"Bearer {key}"}
    response = await api.client.get(
        "/v1/export/requests",
        params={"preset": "LAST_24H", "statusCodes": "429,500", "format": "json"},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    assert sorted(r["id"] for r in orjson.loads(response.content)) == ["x1", "x2", "x3"]
    bad = await api.client.get(
        "/v1/export/requests", params={"statusCodes": "abc"}, headers=headers
    )
    assert bad.status_code == 400
