"""The core analytics fields: values, paging, previous periods, plans, errors, isolation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from tallyql.auth.principal import Role
from tallyql.storage.rollups.compaction import compact
from tallyql.storage.rollups.rebuild import rebuild
from tests.conftest import Api

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
START = NOW - timedelta(days=3)
RANGE = {"start": START.isoformat(), "end": NOW.isoformat()}
PREVIOUS = START - timedelta(days=3)


def _events() -> list[dict[str, Any]]:
    events = []
    models = ["m-a", "m-a", "m-a", "m-b", "m-b", "m-c"]
    for i in range(60):
        ts = START + timedelta(minutes=67 * i + 5)
        events.append(
            {
                "id": f"cur-{i}",
                "timestamp": ts.isoformat(),
                "provider": "p1" if i % 2 else "p2",
                "model": models[i % 6],
                "status": "error" if i % 7 == 0 else "success",
                "error_type": "timeout" if i % 14 == 0 else ("rate_limit" if i % 7 == 0 else None),
                "latency_ms": 100.0 + 10 * i,
                "cost_usd": 0.01 * (i % 5 + 1),
                "user_id": f"u{i % 3}",
                "metadata": {"env": "prod" if i % 2 else "dev"},
            }
        )
    for i in range(10):
        events.append(
            {
                "id": f"prev-{i}",
                "timestamp": (PREVIOUS + timedelta(hours=3 * i + 1)).isoformat(),
                "model": "m-a",
                "cost_usd": 0.5,
            }
        )
    return [{k: v for k, v in e.items() if v is not None} for e in events]


async def _setup(api: Api) -> str:
    key = await api.key()
    result = await api.ingest(key, _events())
    assert result["accepted"] == 70
    return key


async def test_overview_with_previous_period(api: Api) -> None:
    key = await _setup(api)
    data = await api.data(
        key,
        """query($r: TimeRangeInput!) { overview(range: $r) {
            totalRequests errorRate costUsd activeUsers modelsUsed p50LatencyMs
            previous { totalRequests costUsd start }
            changes { field current previous absolute relative } } }""",
        {"r": RANGE},
    )
    ov = data["overview"]
    current_cost = sum(0.01 * (i % 5 + 1) for i in range(60))
    assert ov["totalRequests"] == 60
    assert ov["errorRate"] == len([i for i in range(60) if i % 7 == 0]) / 60
    assert abs(ov["costUsd"] - current_cost) < 1e-9
    assert ov["activeUsers"] == 3 and ov["modelsUsed"] == 3
    p50 = 100 + 10 * 29.5  # interpolated between ranks 29 and 30 of 100 + 10 i, i < 60
    assert abs(ov["p50LatencyMs"] - p50) <= 0.01 * p50
    assert ov["previous"]["totalRequests"] == 10
    assert abs(ov["previous"]["costUsd"] - 5.0) < 1e-9
    cost = next(c for c in ov["changes"] if c["field"] == "costUsd")
    assert abs(cost["relative"] - (current_cost - 5.0) / 5.0) < 1e-9


async def test_timeseries_groups_other_and_previous(api: Api) -> None:
    key = await _setup(api)
    data = await api.data(
        key,
        """query($r: TimeRangeInput!) { timeseries(metrics: [REQUESTS, ERROR_RATE], range: $r,
              granularity: DAY, groupBy: MODEL, limitGroups: 1, compareToPrevious: true) {
            granularity buckets series { metric group isOther values previous } } }""",
        {"r": RANGE},
    )
    ts = data["timeseries"]
    assert ts["granularity"] == "DAY"
    assert len(ts["buckets"]) in (3, 4)
    requests = {(s["group"], s["isOther"]): s for s in ts["series"] if s["metric"] == "REQUESTS"}
    assert set(requests) == {("m-a", False), (None, True)}
    assert sum(requests[("m-a", False)]["values"]) == 30
    assert sum(requests[(None, True)]["values"]) == 30
    assert sum(requests[("m-a", False)]["previous"]) == 10
    assert sum(requests[(None, True)]["previous"]) == 0
    rates = next(s for s in ts["series"] if s["metric"] == "ERROR_RATE" and s["isOther"])
    assert all(v is None for v in rates["previous"])  # no traffic: a rate is null, not 0


async def test_breakdown_pages_without_gaps(api: Api) -> None:
    key = await _setup(api)
    query = """query($r: TimeRangeInput!, $after: String) {
      breakdown(dimension: MODEL, metrics: [REQUESTS, COST_USD], range: $r, first: 2,
                after: $after, orderBy: REQUESTS) {
        totalCount hasNextPage endCursor nodes { key values } } }"""
    seen, after = [], None
    while True:
        page = (await api.data(key, query, {"r": RANGE, "after": after}))["breakdown"]
        assert page["totalCount"] == 3
        seen += [(n["key"], n["values"][0]) for n in page["nodes"]]
        if not page["hasNextPage"]:
            break
        after = page["endCursor"]
    assert seen == [("m-a", 30), ("m-b", 20), ("m-c", 10)]
    asc = await api.data(
        key,
        """query($r: TimeRangeInput!) { breakdown(dimension: MODEL, metrics: [REQUESTS],
              range: $r, descending: false) { nodes { key } } }""",
        {"r": RANGE},
    )
    assert [n["key"] for n in asc["breakdown"]["nodes"]] == ["m-c", "m-b", "m-a"]


async def test_hourly_distribution_and_errors(api: Api) -> None:
    key = await _setup(api)
    data = await api.data(
        key,
        """query($r: TimeRangeInput!) {
          hourlyDistribution(metric: REQUESTS, range: $r)
          errors(range: $r) { totalErrors errorRate byType { type count }
                              byModel { model provider errors errorRate } } }""",
        {"r": {**RANGE, "timezone": "Asia/Tokyo"}},
    )
    expected = [0] * 24
    for i in range(60):
        expected[(START + timedelta(minutes=67 * i + 5) + timedelta(hours=9)).hour] += 1
    assert data["hourlyDistribution"] == expected
    errors = data["errors"]
    erroring = [i for i in range(60) if i % 7 == 0]
    assert errors["totalErrors"] == len(erroring)
    by_type = {t["type"]: t["count"] for t in errors["byType"]}
    assert by_type == {
        "timeout": len([i for i in erroring if i % 14 == 0]),
        "rate_limit": len([i for i in erroring if i % 14]),
    }
    models = ["m-a", "m-a", "m-a", "m-b", "m-b", "m-c"]
    for row in errors["byModel"]:
        mine = [i for i in range(60) if models[i % 6] == row["model"]]
        mine = [i for i in mine if ("p1" if i % 2 else "p2") == row["provider"]]
        assert row["errors"] == len([i for i in mine if i % 7 == 0])
        assert row["errorRate"] == row["errors"] / len(mine)


async def _plans(api: Api, key: str, query: str, variables: dict[str, Any]) -> list[dict]:
    response = await api.client.post(
        "/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {key}", "X-Tallyql-Explain": "1"},
    )
    body = response.json()
    assert "errors" not in body, body
    return body["extensions"]["plans"]


async def test_overview_computes_only_what_is_read(api: Api) -> None:
    key = await _setup(api)
    plain = "query($r: TimeRangeInput!) { overview(range: $r) { totalRequests } }"
    plans = await _plans(api, key, plain, {"r": RANGE})
    assert [p["group"] for p in plans] == ["measures"]  # no histogram, no distinct counts
    fragment = """query($r: TimeRangeInput!) {
        overview(range: $r) { ...F previous { activeUsers } } }
        fragment F on Overview { p95LatencyMs }"""
    plans = await _plans(api, key, fragment, {"r": RANGE})
    groups = sorted(p["group"] for p in plans)
    assert groups == sorted(["histogram:latency", "distinct:user_id"] * 2), groups
    data = await api.data(key, fragment, {"r": RANGE})
    ov = data["overview"]
    assert abs(ov["p95LatencyMs"] - (100 + 10 * 56)) <= 0.01 * (100 + 10 * 56)
    assert ov["previous"] == {"activeUsers": 0}
    changes = "query($r: TimeRangeInput!) { overview(range: $r) { changes { field current } } }"
    data = await api.data(key, changes, {"r": RANGE})
    figures = {c["field"]: c["current"] for c in data["overview"]["changes"]}
    assert figures["totalRequests"] == 60 and figures["activeUsers"] == 3


async def test_planner_uses_rollups_and_falls_back_to_raw(api: Api) -> None:
    key = await _setup(api)
    overview = "query($r: TimeRangeInput!) { overview(range: $r) { totalRequests p95LatencyMs } }"
    plans = await _plans(api, key, overview, {"r": {"preset": "LAST_30D"}})
    assert {p["source"].split(":")[0] for p in plans} == {"rollup", "histogram"}
    grains = {piece["grain"] for p in plans for piece in p["pieces"]}
    assert {"raw", "h", "d"} <= grains
    with_metadata = await _plans(
        api,
        key,
        """query($r: TimeRangeInput!, $f: EventFilter) {
             overview(range: $r, filter: $f) { totalRequests } }""",
        {"r": RANGE, "f": {"metadata": [{"key": "env", "value": "prod"}]}},
    )
    assert {p["source"] for p in with_metadata} == {"raw"}
    minute = await _plans(
        api,
        key,
        """query($r: TimeRangeInput!) {
             timeseries(metrics: [REQUESTS], range: $r, granularity: MINUTE) { buckets } }""",
        {"r": {"start": (NOW - timedelta(hours=5)).isoformat(), "end": NOW.isoformat()}},
    )
    assert all(piece["grain"] == "raw" for p in minute for piece in p["pieces"])


async def test_custom_query_rules(api: Api) -> None:
    key = await _setup(api)
    query = "query($q: MetricsQueryInput!) { metrics(query: $q) { totalRows truncated } }"
    base = {"metrics": ["REQUESTS"], "range": RANGE}
    body = await api.graphql(key, query, {"q": {**base, "dimensions": [{"dimension": "USER"}]}})
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "explicit limit" in body["errors"][0]["message"]
    ok = await api.data(
        key, query, {"q": {**base, "dimensions": [{"dimension": "USER"}], "limit": 2}}
    )
    assert ok["metrics"] == {"totalRows": 3, "truncated": True}
    four = [{"dimension": d} for d in ("MODEL", "PROVIDER", "KIND", "STATUS")]
    body = await api.graphql(key, query, {"q": {**base, "dimensions": four}})
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    body = await api.graphql(key, query, {"q": {**base, "limit": 10_001}})
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_forcing_raw_needs_an_admin_key(api: Api) -> None:
    await _setup(api)
    viewer = await api.key(role=Role.VIEWER)
    response = await api.client.post(
        "/graphql",
        json={"query": "{ overview(range: {preset: LAST_24H}) { totalRequests } }"},
        headers={"Authorization": f"Bearer {viewer}", "X-Tallyql-Plan": "raw"},
    )
    assert response.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_rebuild_restores_rollups(api: Api) -> None:
    key = await _setup(api)
    query = """query($r: TimeRangeInput!) { breakdown(dimension: MODEL, metrics: [COST_USD],
                 range: $r) { nodes { key values } } }"""
    before = await api.data(key, query, {"r": RANGE})
    # PostgreSQL: a rebuild drops the range's staged deltas with its rollup rows (no double count)
    await rebuild(api.services.db, START - timedelta(days=5), NOW)
    assert await api.data(key, query, {"r": RANGE}) == before
    await compact(api.services.db, wait=True)
    assert await api.data(key, query, {"r": RANGE}) == before
    async with api.services.db.write() as conn:
        await conn.execute(text("DELETE FROM rollup_models_h"))
        await conn.execute(text("DELETE FROM rollup_models_d"))
    damaged = await api.data(key, query, {"r": RANGE})
    assert damaged != before
    await rebuild(api.services.db, START - timedelta(days=5), NOW)
    assert await api.data(key, query, {"r": RANGE}) == before


ALL_FIELDS = """query($r: TimeRangeInput!, $q: MetricsQueryInput!) {
  overview(range: $r) { totalRequests costUsd activeUsers }
  timeseries(metrics: [REQUESTS], range: $r) { series { values } }
  breakdown(dimension: MODEL, metrics: [REQUESTS], range: $r) { totalCount }
  hourlyDistribution(metric: REQUESTS, range: $r)
  errors(range: $r) { totalErrors byType { count } byModel { errors } }
  metrics(query: $q) { totalRows }
}"""


async def test_tenants_never_see_each_other(api: Api) -> None:
    await _setup(api)
    other = await api.key(workspace="other-tenant")
    await api.ingest(other, [{"id": "x", "timestamp": (NOW - timedelta(hours=2)).isoformat()}])
    data = await api.data(
        other, ALL_FIELDS, {"r": RANGE, "q": {"metrics": ["REQUESTS"], "range": RANGE}}
    )
    assert data["overview"] == {"totalRequests": 1, "costUsd": 0, "activeUsers": 0}
    assert sum(sum(s["values"]) for s in data["timeseries"]["series"]) == 1
    assert data["breakdown"]["totalCount"] == 1
    assert sum(data["hourlyDistribution"]) == 1
    assert data["errors"] == {"totalErrors": 0, "byType": [], "byModel": []}
    assert data["metrics"]["totalRows"] == 1
