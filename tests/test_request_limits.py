"""GraphQL request limits (schema/base/limits.py, http/graphql_limits.py, engine/cost*.py,
storage/read_limits.py): body and document limits before parsing, permission before the
variables are coerced, the cost model and its budgets, statement timeouts and deadlines."""

from __future__ import annotations

import asyncio
import math
from dataclasses import replace
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import text

from tallyql.auth.principal import Role
from tallyql.config import Settings
from tallyql.engine.query import cost_meter, executor
from tallyql.schema import build_schema
from tallyql.schema.base.limits import ROOT_PERMISSIONS
from tallyql.storage.database import Database
from tallyql.storage.dialect import Dialect
from tallyql.storage.read_limits import StatementTimeout
from tests.conftest import Api, running_api

SERIES = """query($r: TimeRangeInput!) {
  timeseries(metrics: [REQUESTS, COST_USD, P95_LATENCY_MS], range: $r, granularity: DAY) {
    buckets series { values } }
}"""
WINDOW = {"start": "2026-11-01T00:30:00Z", "end": "2026-11-04T00:00:00Z"}
# The README's cost model, restated here to recompute costs independently.
ROWS_PER_POINT, RAW_PER_HOUR, RAW_PER_POINT = 100, 2000, 10_000
GRAIN_SECONDS = {"h": 3600, "d": 86400, "w": 604800}


def points_of(plans: list[dict[str, Any]], buckets: int) -> int:
    """The cost of explained plans without dimensions, by the README's formula."""
    total = 0
    for plan in plans:
        raw, rows = 0.0, buckets
        for piece in plan["pieces"]:
            start = datetime.fromisoformat(piece["start"])
            seconds = (datetime.fromisoformat(piece["end"]) - start).total_seconds()
            if piece["grain"] == "raw":
                raw += seconds / 3600 * RAW_PER_HOUR
            else:
                rows += math.ceil(seconds / GRAIN_SECONDS[piece["grain"]])
        total += 1 + math.ceil(raw / RAW_PER_POINT + rows / ROWS_PER_POINT)
    return total


async def post(api: Api, key: str, query: str, variables: Any = None, **headers: str) -> Any:
    return await api.client.post(
        "/graphql",
        json={"query": query, "variables": variables or {}},
        headers={"Authorization": f"Bearer {key}", **headers},
    )


def test_every_root_field_has_its_least_permission() -> None:
    schema = build_schema()._schema
    assert set(ROOT_PERMISSIONS["query"]) == set(schema.query_type.fields)
    assert schema.mutation_type is not None
    assert set(ROOT_PERMISSIONS["mutation"]) == set(schema.mutation_type.fields)


async def test_a_viewer_is_refused_ingest_before_its_events_are_coerced(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    from graphql.execution import executor as gql_executor

    coerced: list[int] = []
    real = gql_executor.get_variable_values

    def counted(*args: Any, **kwargs: Any) -> Any:
        coerced.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(gql_executor, "get_variable_values", counted)
    mutation = """mutation($e: [EventInput!]!) { ingestEvents(events: $e) { accepted } }"""
    viewer = await api.key("acme", Role.VIEWER)
    many = [{"model": "m"}] * 50_000
    response = await post(api, viewer, mutation, {"e": many})
    body = response.json()
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN", body
    assert body["data"] is None
    assert coerced == []  # refused before graphql-core coerced a single variable
    # an ingest key's call is coerced and runs
    ingest = await api.key("acme", Role.INGEST)
    response = await post(api, ingest, mutation, {"e": [{"model": "m", "id": "a"}]})
    assert response.json()["data"] == {"ingestEvents": {"accepted": 1}}
    assert coerced == [1]
    # and a viewer's query through a fragment is refused the same way when it reaches a
    # mutation it may not run
    admin_only = 'mutation { ...F } fragment F on Mutation { deleteBudget(id: "1") { ok } }'
    body = (await post(api, viewer, admin_only)).json()
    assert body["errors"][0]["extensions"]["code"] in ("FORBIDDEN", "GRAPHQL_VALIDATION_FAILED")


async def test_bodies_and_documents_over_their_limits_are_refused_before_parsing(
    settings: Settings, db_kind: str
) -> None:
    limited = replace(settings, graphql_max_body_bytes=4096, graphql_max_query_bytes=2048)
    async with running_api(limited, db_kind) as api:
        key = await api.key()
        # declared length over the limit
        response = await post(api, key, "{ me { role } }", {"pad": "x" * 5000})
        assert response.status_code == 413
        assert response.json()["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"

        # streamed (chunked, no Content-Length): refused as it arrives
        async def chunks() -> Any:
            for _ in range(10):
                yield b" " * 1000

        response = await api.client.post(
            "/graphql",
            content=chunks(),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        assert response.status_code == 413
        assert response.json()["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"
        # a document of whitespace, a comment or a string literal over its own limit
        for padding in (" " * 3000, "#" + "c" * 3000 + "\n"):
            body = (await post(api, key, "{ me { role } " + padding + "}")).json()
            assert body["errors"][0]["extensions"]["code"] == "QUERY_TOO_LARGE", body
            assert body["extensions"]["cost"]["spent"] == 0  # every answer says its cost
        literal = '{ me { role } __type(name: "' + "x" * 3000 + '") { name } }'
        body = (await post(api, key, literal)).json()
        assert body["errors"][0]["extensions"]["code"] == "QUERY_TOO_LARGE"
        # under the limits all is well
        response = await post(api, key, "{ me { role } }", {"pad": "x" * 1000})
        assert response.status_code == 200 and response.json()["data"]["me"]["role"] == "admin"


async def test_cost_is_computed_from_the_plans_and_reported(api: Api) -> None:
    key = await api.key()
    response = await post(api, key, SERIES, {"r": WINDOW}, **{"X-Tallyql-Explain": "1"})
    body = response.json()
    assert "errors" not in body, body
    plans = body["extensions"]["plans"]
    buckets = len(body["data"]["timeseries"]["buckets"])
    assert buckets == 3  # Nov 1 (from 00:30), 2 and 3
    expected = 1 + points_of(plans, buckets)
    # by hand: sums and the latency histogram, each 1 + (half an hour raw: 1,000 events) /
    # 10,000 + (23 hour rows, 2 day rows, 3 answered rows) / 100, rounded up; plus the field
    assert len(plans) == 2 and expected == 1 + 2 * (1 + math.ceil(0.1 + 0.28)) == 5
    cost = body["extensions"]["cost"]
    assert cost["spent"] == expected
    assert cost["requestLimit"] == 20_000 and cost["requestRemaining"] == 20_000 - expected
    per_minute = api.services.settings.cost_key_limit_per_minute
    assert cost["keyLimitPerMinute"] == per_minute
    assert per_minute - expected <= cost["keyRemaining"] <= per_minute


async def test_a_key_over_its_budget_per_minute_gets_429_with_retry_after(
    settings: Settings, db_kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(cost_meter, "monotonic", lambda: now[0])
    limit = 12
    rate = limit / 60  # points refilled a second
    async with running_api(replace(settings, cost_key_limit_per_minute=limit), db_kind) as api:
        key = await api.key()
        first = (await post(api, key, SERIES, {"r": WINDOW})).json()
        each = first["extensions"]["cost"]["spent"]  # one field point + the plans' points
        assert each == 5, first  # test_cost_is_computed_from_the_plans_and_reported
        plan_points = each - 1
        assert first["extensions"]["cost"]["keyRemaining"] == limit - each
        second = (await post(api, key, SERIES, {"r": WINDOW})).json()
        left = limit - 2 * each  # 2
        assert second["extensions"]["cost"]["keyRemaining"] == left
        response = await post(api, key, SERIES, {"r": WINDOW})
        assert response.status_code == 429
        body = response.json()
        assert body["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
        # the field point is paid, the plans are refused until the bucket holds them
        left -= 1
        wait = math.ceil((plan_points - left) / rate)  # (4 - 1) / 0.2 = 15 s
        assert response.headers["Retry-After"] == str(wait) == "15"
        assert body["extensions"]["cost"]["spent"] == 1
        assert body["extensions"]["cost"]["keyRemaining"] == left
        now[0] += wait  # enough for the plans, not for the next request's field point too
        again = await post(api, key, SERIES, {"r": WINDOW})
        left = left + wait * rate - 1  # 3
        assert again.status_code == 429
        assert again.headers["Retry-After"] == str(math.ceil((plan_points - left) / rate))
        now[0] += 10  # 3 + 2 = 5: the next request's field and plans
        third = await post(api, key, SERIES, {"r": WINDOW})
        assert third.status_code == 200 and "errors" not in third.json()
        assert third.json()["extensions"]["cost"]["keyRemaining"] == 0
        # a key that cannot pay even a field's point is refused before its body is read:
        # a body over the limit gets 429, not 413, and the same wait (1 point at 0.2 a second)
        huge = await post(api, key, "{ me { role } }", {"pad": "x" * (5 * 1024 * 1024)})
        assert huge.status_code == 429 and huge.headers["Retry-After"] == "5"
        assert huge.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
        assert huge.json()["extensions"]["cost"]["keyRemaining"] == 0


async def test_one_request_over_its_own_budget_is_refused_field_by_field(
    settings: Settings, db_kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cost_meter, "monotonic", lambda: 0.0)  # no refill
    async with running_api(settings, db_kind) as probe:
        key = await probe.key()
        each = (await post(probe, key, SERIES, {"r": WINDOW})).json()["extensions"]["cost"]
        plan_points = each["spent"] - 1
    limit = 2 + plan_points + plan_points // 2  # two field points and one question fit
    async with running_api(replace(settings, cost_request_limit=limit), db_kind) as api:
        key = await api.key()
        two = SERIES.replace("timeseries(", "a: timeseries(", 1).replace(
            "buckets series { values } }",
            "buckets } b: timeseries(metrics: [REQUESTS, "
            "COST_USD, P95_LATENCY_MS], range: $r, granularity: DAY) { buckets }",
            1,
        )
        response = await post(api, key, two, {"r": WINDOW})
        assert response.status_code == 200  # nothing to retry: ask for less
        body = response.json()
        assert [e["extensions"]["code"] for e in body["errors"]] == ["COST_LIMIT"]
        # the refused question spends the request: the key pays what the request had left
        cost = body["extensions"]["cost"]
        assert cost["spent"] == limit and cost["requestRemaining"] == 0
        assert cost["keyRemaining"] == cost["keyLimitPerMinute"] - limit


async def test_the_worst_questions_run_only_what_the_budget_pays(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    fetched: list[int] = []
    real = executor._fetch

    async def counted(db: Any, statement: Any) -> Any:
        fetched.append(1)
        return await real(db, statement)

    monkeypatch.setattr(executor, "_fetch", counted)
    key = await api.key()
    ten_years = {"start": "2016-12-01T00:00:00Z", "end": "2026-12-01T00:00:00Z"}
    worst = """query($r: TimeRangeInput!) { metrics(query: {metrics: [REQUESTS, COST_USD],
      range: $r, granularity: WEEK, dimensions: [{dimension: SESSION}, {dimension: TAG},
      {dimension: MODEL}], limit: 100}) { totalRows } }"""
    body = (await post(api, key, worst, {"r": ten_years})).json()
    assert body["errors"][0]["extensions"]["code"] == "COST_LIMIT", body
    assert fetched == []  # refused from its plans: it never read
    aliases = " ".join(
        f"t{i}: timeseries(metrics: [REQUESTS, COST_USD, P95_LATENCY_MS, UNIQUE_USERS], "
        "range: $r, granularity: HOUR, groupBy: SESSION, compareToPrevious: true) { buckets }"
        for i in range(30)
    )
    days83 = {"start": "2026-09-01T00:00:00Z", "end": "2026-11-23T00:00:00Z"}
    body = (
        await post(api, key, f"query($r: TimeRangeInput!) {{ {aliases} }}", {"r": days83})
    ).json()
    codes = {e["extensions"]["code"] for e in body["errors"]}
    assert codes == {"COST_LIMIT"}, body["errors"][:2]
    # each alias first asks for its top sessions over the whole window (one plan, raw
    # events: 1,992 hours x 2,000 events x 2 for the session grouping / 10,000, plus 1,000
    # answered rows / 100, plus the statement's point); the budget pays 24 of them, and the
    # series never start. What ran is exactly what was paid.
    top_groups = 1 + math.ceil(1992 * 2000 * 2 / 10_000 + 1000 / 100)
    assert len(fetched) == (20_000 - 30) // top_groups
    assert body["extensions"]["cost"]["spent"] == 20_000  # the refusal spent the request


async def test_a_statement_over_the_timeout_is_cancelled(db_kind: str, database_url: str) -> None:
    db = Database(database_url, statement_timeout=0.2)
    slow = (
        "SELECT pg_sleep(5)"
        if db.dialect is Dialect.POSTGRESQL
        else "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1e9) "
        "SELECT count(*) FROM c"
    )
    try:
        with pytest.raises(StatementTimeout):
            async with db.read() as conn:
                await conn.execute(text(slow))
        async with db.read() as conn:  # the connection is fine afterwards
            assert (await conn.execute(text("SELECT 1"))).scalar() == 1
    finally:
        await db.dispose()


async def test_postgresql_reads_run_without_jit(db_kind: str, database_url: str) -> None:
    """Read connections turn JIT off (compiling a plan over many partitions cost more than
    running it). SQLite has no JIT: its reads just work."""
    db = Database(database_url)
    try:
        if db.dialect is not Dialect.POSTGRESQL:
            async with db.read() as conn:
                assert (await conn.execute(text("SELECT 1"))).scalar() == 1
            return
        async with db.read() as conn:
            assert (await conn.execute(text("SHOW jit"))).scalar() == "off"
    finally:
        await db.dispose()


async def test_a_timed_out_question_answers_query_timeout(
    settings: Settings, db_kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through GraphQL: a question whose statement runs past the timeout (made slow here by a
    test-only statement in its place) fails with QUERY_TIMEOUT, not INTERNAL_ERROR."""

    async def slow_fetch(db: Any, statement: Any) -> Any:
        sql = (
            "SELECT pg_sleep(5)"
            if db.dialect is Dialect.POSTGRESQL
            else "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
            "WHERE x < 1e9) SELECT count(*) FROM c"
        )
        async with db.read() as conn:
            await conn.execute(text(sql))
        return []

    monkeypatch.setattr(executor, "_fetch", slow_fetch)
    async with running_api(replace(settings, db_statement_timeout_seconds=0.3), db_kind) as api:
        key = await api.key()
        body = (await post(api, key, SERIES, {"r": WINDOW})).json()
        assert body["errors"][0]["extensions"]["code"] == "QUERY_TIMEOUT", body


async def test_a_request_past_its_deadline_starts_no_statement(
    settings: Settings, db_kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = executor._fetch

    async def late_fetch(db: Any, statement: Any) -> Any:
        await asyncio.sleep(0.3)  # the request's time runs out before its read starts
        return await real(db, statement)

    monkeypatch.setattr(executor, "_fetch", late_fetch)
    async with running_api(replace(settings, request_deadline_seconds=0.2), db_kind) as api:
        key = await api.key()
        body = (await post(api, key, SERIES, {"r": WINDOW})).json()
        assert body["errors"][0]["extensions"]["code"] == "DEADLINE_EXCEEDED", body


def test_a_request_refusal_spends_the_request_and_keeps_the_wait() -> None:
    """A key's refusal sets the wait (the HTTP answer's 429), whatever comes after; a question
    over the request's budget spends the request, and what it had left is taken from the key
    as far as the key has it."""
    now = [0.0]
    buckets = cost_meter.KeyBuckets(60, clock=lambda: now[0])
    meter = cost_meter.CostMeter(100, buckets, "k")
    meter.charge(50, "a")
    meter.charge(5, "b")  # the key has 5 left
    with pytest.raises(cost_meter.RateLimited):
        meter.charge(6, "c")
    assert meter.retry_after == 1  # 1 point at one a second
    with pytest.raises(cost_meter.CostLimitExceeded):
        meter.charge(50, "d")  # 55 + 50 > 100: the request is spent, the key's 5 taken
    assert meter.retry_after == 1
    assert meter.summary() == {
        "spent": 100,
        "requestLimit": 100,
        "requestRemaining": 0,
        "keyLimitPerMinute": 60,
        "keyRemaining": 0,
    }
    other = cost_meter.CostMeter(100, cost_meter.KeyBuckets(1000, clock=lambda: 0.0), "j")
    other.charge(30, "e")
    with pytest.raises(cost_meter.CostLimitExceeded):
        other.charge(71, "f")
    assert other.summary()["keyRemaining"] == 900  # 30 paid + the 70 the request had left


async def test_each_answer_keeps_its_own_status_while_bodies_arrive_slowly(
    settings: Settings, db_kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request refused by its key's budget answers 429 even when another request was
    answered while its body was still arriving (the body limit awaits the body)."""
    import orjson

    monkeypatch.setattr(cost_meter, "monotonic", lambda: 0.0)  # no refill
    async with running_api(replace(settings, cost_key_limit_per_minute=6), db_kind) as api:
        spent, other = await api.key("a"), await api.key("b")
        assert (await post(api, spent, SERIES, {"r": WINDOW})).status_code == 200  # 5 of 6
        payload = orjson.dumps({"query": SERIES, "variables": {"r": WINDOW}})
        arrived = asyncio.Event()

        async def slowly() -> Any:
            yield payload[:10]
            await arrived.wait()  # the other request is answered meanwhile
            yield payload[10:]

        async def slow_request() -> Any:
            return await api.client.post(
                "/graphql",
                content=slowly(),
                headers={"Authorization": f"Bearer {spent}", "Content-Type": "application/json"},
            )

        slow = asyncio.create_task(slow_request())
        await asyncio.sleep(0.2)
        quick = await post(api, other, "{ me { role } }")
        arrived.set()
        refused = await slow
        assert quick.status_code == 200
        assert refused.status_code == 429, refused.json()
        assert refused.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
        assert refused.headers["Retry-After"] == "40"  # 4 points at 0.1 a second


async def test_windows_of_millennia_are_planned_without_visiting_their_days(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A UTC window from year 1 to 9999 is planned (and priced) without stepping through its
    3.6 million days looking for offset changes; in a zone with daylight saving time a window
    spans at most 100 years."""
    from tallyql.engine.query import buckets

    looked: list[int] = []
    real = buckets._offset

    def counted(instant: datetime, tz: Any) -> int:
        looked.append(1)
        return real(instant, tz)

    monkeypatch.setattr(buckets, "_offset", counted)
    key = await api.key()
    await api.ingest(key, [{"id": "e1", "model": "m", "provider": "p"}])
    wide = '{start: "0001-02-01T00:00:00Z", end: "9999-12-01T00:00:00Z"'
    query = "{ breakdown(dimension: MODEL, metrics: [REQUESTS], range: %s}) { totalCount } }"
    body = (await post(api, key, query % wide)).json()
    # the widest window accepted (0001-02-01 to 9999-12-01): 521,713 weeks of rollup rows
    # x 20 models / 100 + 20 answered rows / 100 + 1
    assert body["errors"][0]["extensions"]["code"] == "COST_LIMIT"
    assert "104345 cost points" in body["errors"][0]["message"]
    assert len(looked) <= 4
    paris = wide + ', timezone: "Europe/Paris"'
    body = (await post(api, key, query % paris)).json()
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "at most 100 years" in body["errors"][0]["message"]
    century = '{start: "2000-01-01T00:00:00Z", end: "2026-12-31T00:00:00Z"'
    century += ', timezone: "Europe/Paris"'
    body = (await post(api, key, query % century)).json()
    assert body["data"]["breakdown"]["totalCount"] == 1


async def test_session_stats_pays_for_the_days_that_hold_sessions(api: Api) -> None:
    key = await api.key()
    await api.ingest(
        key,
        [
            {"id": f"s{i}", "session_id": f"x{i % 4}", "model": "m", "provider": "p",
             "timestamp": f"2026-11-0{1 + i % 3}T10:00:00Z"}
            for i in range(12)
        ],
    )  # fmt: skip
    async with api.services.db.read() as conn:
        stamped = (await conn.execute(text("SELECT count(*) FROM session_day_versions"))).scalar()
    assert stamped and stamped >= 1
    query = """{ sessionStats(range: {start: "0001-02-01T00:00:00Z",
      end: "9999-12-01T00:00:00Z"}) { sessions } }"""
    body = (await post(api, key, query)).json()
    assert body["data"]["sessionStats"]["sessions"] == 4
    # the field's point, then 1 + (stamped days + two edge days) x 500 sessions / 100
    assert body["extensions"]["cost"]["spent"] == 1 + 1 + math.ceil((stamped + 2) * 500 / 100)
    filtered = query.replace("}) {", '}, filter: {tags: ["a"]}) {', 1)
    body = (await post(api, key, filtered)).json()  # a scan of 3.6 million days: refused
    assert body["errors"][0]["extensions"]["code"] == "COST_LIMIT", body
