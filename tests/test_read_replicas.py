"""Reads from a real PostgreSQL streaming standby (TALLYQL_DATABASE_READ_URLS): routing,
freshness while the standby's replay is paused, failover to the primary, recovery, lag, and
answers identical to the primary's (and to a plain-Python recomputation) on every root field
of Query. SQLite: read URLs are refused and nothing changes.

The standby (tests/support/standby.py) is made once per session by pg_basebackup and pg_ctl."""

from __future__ import annotations

import asyncio
import csv
import io
import re
import time
import zipfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from tallyql.app import create_app
from tallyql.config import Settings, load_settings
from tallyql.storage.standbys import DOWN, LAGGING, STREAMING, StandbyRouter
from tests.conftest import Api, running_api
from tests.support.helpers import ago, llm
from tests.support.isolation_cases import CASES, ask, window
from tests.support.isolation_data import build_world
from tests.support.notify_helpers import Receiver, quiet_settings
from tests.support.reports import CREATE, RUNS
from tests.support.standby import Standby, make_standby, remove, wait_caught_up, wait_streaming

EXPLAIN = {"X-Tallyql-Explain": "1"}
TOTALS = "{ overview(range: {preset: LAST_24H}) { totalRequests costUsd } }"


@pytest.fixture(scope="session")
def standby(postgres_database: str) -> Iterator[Standby]:
    made = make_standby(postgres_database)
    try:
        asyncio.run(wait_streaming(made.url(postgres_database)))
        asyncio.run(wait_caught_up(made.url(postgres_database), postgres_database))
        yield made
    finally:
        remove(made)


@pytest.fixture
def settings(postgres_database: str, standby: Standby, tmp_path: Path) -> Settings:
    return quiet_settings(
        postgres_database,
        tmp_path,
        database_read_urls=standby.url(postgres_database),
        # the standby replays the whole test server's WAL (other sessions' too) on a busy
        # machine: the tests that expect it to answer give it time
        read_wait_ms=15_000.0,
        # on a machine this loaded the standby's replay lags seconds at times: correctness
        # never depends on the bound (each request checks positions), the lagging test sets it
        read_max_lag_seconds=120.0,
    )


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    async with running_api(settings, "postgresql") as client:
        yield client


def router_of(api: Api) -> StandbyRouter:
    router = api.services.db.standbys
    assert router is not None
    return router


async def explained(api: Api, key: str, query: str) -> tuple[Any, dict[str, Any]]:
    body = await api.graphql(key, query, headers=EXPLAIN)
    assert "errors" not in body, body["errors"]
    return body["data"], body["extensions"]["database"]


async def standby_sql(standby: Standby, settings: Settings, sql: str) -> Any:
    conn = await asyncpg.connect(standby.url(settings.database_url))
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


async def until(check: Any, seconds: float) -> float:
    """Seconds until check() is true (fails after `seconds`)."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < seconds, "timed out"
        await asyncio.sleep(0.01)
    return time.monotonic() - started


@asynccontextmanager
async def paused(standby: Standby, settings: Settings) -> AsyncIterator[None]:
    await standby_sql(standby, settings, "SELECT pg_wal_replay_pause()")
    try:
        yield
    finally:
        await standby_sql(standby, settings, "SELECT pg_wal_replay_resume()")


# ---------------------------------------------------------------- SQLite and no read URLs


def test_read_urls_need_postgresql(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="PostgreSQL"):
        load_settings(
            {"TALLYQL_DATA_DIR": str(tmp_path), "TALLYQL_DATABASE_READ_URLS": "postgresql://x/y"}
        )
    with pytest.raises(ValueError, match="postgresql"):
        load_settings(
            {
                "TALLYQL_DATABASE_URL": "postgresql://postgres@127.0.0.1/test",
                "TALLYQL_DATABASE_READ_URLS": "sqlite:///x.db",
            }
        )


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_without_read_urls_nothing_changes(
    kind: str, tmp_path: Path, postgres_database: str
) -> None:
    url = f"sqlite:///{tmp_path / 't.db'}" if kind == "sqlite" else postgres_database
    async with running_api(quiet_settings(url, tmp_path), kind) as api:
        assert api.services.db.standbys is None
        key = await api.key()
        await api.ingest(key, [llm("e1", timestamp=ago(minutes=5), cost_usd=0.25)])
        body = await api.graphql(key, TOTALS, headers=EXPLAIN)
        assert body["data"]["overview"] == {"totalRequests": 1, "costUsd": 0.25}
        assert "database" not in body["extensions"]  # explain as before
        health = (await api.client.get("/health")).json()
        assert "read_replicas" not in health
        assert "tallyql_standby" not in (await api.client.get("/metrics")).text


# ---------------------------------------------------------------- routing


async def test_queries_exports_and_reports_read_from_the_standby(api: Api) -> None:
    router = router_of(api)
    (standby,) = router.standbys
    await until(lambda: standby.state == STREAMING, 60.0)
    key = await api.key()
    await api.ingest(
        key, [llm(f"e{i}", timestamp=ago(minutes=i + 1), cost_usd=0.5) for i in range(4)]
    )
    # the ingest call answered after COMMIT: the next query must show all four events
    data, db = await explained(api, key, TOTALS)
    assert data["overview"] == {"totalRequests": 4, "costUsd": 2.0}
    assert db["answeredBy"] == standby.name, db
    assert re.fullmatch(r"[0-9A-F]+/[0-9A-F]+", db["requiredLsn"])

    # a mutation reads where it writes: the primary
    mutation = (
        'mutation { upsertUsers(users: [{id: "u1", email: "u1@x.io"}]) { userErrors { code } } }'
    )
    body = await api.graphql(key, mutation, headers=EXPLAIN)
    assert body["extensions"]["database"]["answeredBy"] == "primary"
    # ... and the next query sees it, though it reads from the standby
    data, db = await explained(api, key, '{ user(id: "u1") { email } }')
    assert data["user"] == {"email": "u1@x.io"}
    assert db["answeredBy"] == standby.name

    # an export streams from the standby; its audit record is written on the primary
    response = await api.client.get(
        "/v1/export/requests?preset=LAST_24H&format=ndjson",
        headers={"Authorization": f"Bearer {key}", **EXPLAIN},
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-tallyql-database"] == standby.name
    rows = [orjson.loads(line) for line in response.text.splitlines()]
    assert sorted(r["id"] for r in rows) == ["e0", "e1", "e2", "e3"]
    audit = await api.data(key, "{ auditEvents(first: 10) { nodes { action resourceType } } }")
    assert {"action": "EXPORT", "resourceType": "export"} in audit["auditEvents"]["nodes"]

    # a scheduled report's tables are read through a route too
    db_ = api.services.db
    with db_.standby_reads() as route:
        async with db_.read() as conn:
            assert (await conn.exec_driver_sql("SELECT pg_is_in_recovery()")).scalar() is True
    assert route is not None and route.answered is not None
    assert route.answered.database == standby.name
    # background work outside a route stays on the primary
    async with db_.read() as conn:
        assert (await conn.exec_driver_sql("SELECT pg_is_in_recovery()")).scalar() is False

    health = (await api.client.get("/health")).json()
    assert health["status"] == "ok"
    (entry,) = health["read_replicas"]["standbys"]
    assert entry["name"] == standby.name and entry["state"] == STREAMING
    assert entry["reads"] == standby.reads >= 4
    total = standby.reads + router.primary_reads
    assert entry["share_of_reads"] == round(standby.reads / total, 4)
    metrics = (await api.client.get("/metrics")).text
    assert f'tallyql_standby_state{{standby="{standby.name}",state="streaming"}} 1.0' in metrics
    assert f'tallyql_reads_total{{database="{standby.name}"}} {float(standby.reads)}' in metrics
    assert "tallyql_standby_lag_seconds" in metrics


# ---------------------------------------------------------------- freshness


async def test_paused_replay_sends_the_read_to_the_primary(
    api: Api, standby: Standby, settings: Settings
) -> None:
    router = router_of(api)
    key = await api.key()
    await api.ingest(key, [llm("old", timestamp=ago(minutes=3), cost_usd=1.0)])
    _, db = await explained(api, key, TOTALS)
    assert db["answeredBy"] == router.standbys[0].name
    router.wait_seconds = 0.3
    async with paused(standby, settings):
        await api.ingest(key, [llm("new", timestamp=ago(minutes=2), cost_usd=2.0)])
        # the standby cannot show "new": after waiting its bound, the primary answers
        data, db = await explained(api, key, TOTALS)
        assert data["overview"] == {"totalRequests": 2, "costUsd": 3.0}
        assert db["answeredBy"] == "primary"
        assert "within 300 ms" in db["reason"] and 250 <= db["waitedMs"] < 1000
        # what the standby itself shows is older: the routing, not luck, made the answer right
        stale = await standby_sql(standby, settings, "SELECT count(*) FROM events")
        assert stale == 1


async def test_a_request_waits_for_replay_to_catch_up(
    api: Api, standby: Standby, settings: Settings
) -> None:
    router = router_of(api)
    key = await api.key()
    async with paused(standby, settings):
        await api.ingest(key, [llm("e1", timestamp=ago(minutes=2), cost_usd=1.5)])
        asked = asyncio.create_task(explained(api, key, TOTALS))
        await asyncio.sleep(0.2)
        assert not asked.done()  # waiting for the standby
    data, db = await asked  # replay resumed: the standby answers, with the event
    assert data["overview"] == {"totalRequests": 1, "costUsd": 1.5}
    assert db["answeredBy"] == router.standbys[0].name
    assert db["waitedMs"] >= 150


# ---------------------------------------------------------------- failures


async def test_a_stopped_standby_is_skipped_then_used_again(
    api: Api, standby: Standby, settings: Settings
) -> None:
    router = router_of(api)
    (node,) = router.standbys
    key = await api.key()
    await api.ingest(key, [llm("e1", timestamp=ago(minutes=2), cost_usd=1.0)])
    standby.stop()
    try:
        detected = await until(lambda: node.state == DOWN, 5.0)
        assert detected < 1.0  # skipped within a second
        await api.ingest(key, [llm("e2", timestamp=ago(minutes=1), cost_usd=2.0)])
        data, db = await explained(api, key, TOTALS)
        assert data["overview"] == {"totalRequests": 2, "costUsd": 3.0}
        assert db == {**db, "answeredBy": "primary", "reason": "no healthy standby"}
        health = (await api.client.get("/health")).json()
        assert health["status"] == "ok"  # the primary answers: degraded reads, not a failure
        assert health["read_replicas"]["standbys"][0]["state"] == DOWN
        assert health["read_replicas"]["standbys"][0]["error"]
        # a request that meets the standby down before the monitor does goes to the primary
        node.state = STREAMING
        node.replay_lsn = 2**62
        data, db = await explained(api, key, TOTALS)
        assert data["overview"]["totalRequests"] == 2
        assert db["answeredBy"] == "primary"
        assert node.state == DOWN
    finally:
        standby.start()
    await until(lambda: node.state == STREAMING, 120.0)
    assert node.replay_lsn is not None and node.replay_lsn < 2**62  # its own word again
    data, db = await explained(api, key, TOTALS)
    assert data["overview"] == {"totalRequests": 2, "costUsd": 3.0}
    assert db["answeredBy"] == node.name


async def test_a_lagging_standby_is_skipped_until_it_catches_up(
    api: Api, standby: Standby, settings: Settings
) -> None:
    router = router_of(api)
    (node,) = router.standbys
    await until(lambda: node.state == STREAMING, 120.0)
    router.max_lag_seconds = 0.5
    key = await api.key()
    async with paused(standby, settings):
        await api.ingest(key, [llm("e1", timestamp=ago(minutes=2), cost_usd=1.0)])
        await until(lambda: node.state == LAGGING, 5.0)
        assert node.lag_seconds is not None and node.lag_seconds > 0.5
        _, db = await explained(api, key, TOTALS)
        assert db["answeredBy"] == "primary" and db["reason"] == "no healthy standby"
    router.max_lag_seconds = settings.read_max_lag_seconds
    await until(lambda: node.state == STREAMING, 120.0)
    data, db = await explained(api, key, TOTALS)
    assert data["overview"]["totalRequests"] == 1 and db["answeredBy"] == node.name


# ---------------------------------------------------------------- identical answers


async def test_every_root_field_answers_as_the_primary_does(
    api: Api, settings: Settings, receiver: Receiver
) -> None:
    world = await build_world(api, receiver.url.rsplit("/", 1)[0])
    before = router_of(api).standbys[0].reads
    primary_app = create_app(replace(settings, database_read_urls=""))
    w = window()
    async with primary_app.router.lifespan_context(primary_app):
        transport = httpx.ASGITransport(app=primary_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            primary = Api(primary_app, c)
            failures = []
            for tenant in world:
                for field, (body, check) in CASES.items():
                    answer = await ask(api, tenant, body, w)
                    reference = await ask(primary, tenant, body, w)
                    try:
                        # extensions differ: the cost each key has left, where it was read
                        assert {k: answer.get(k) for k in ("data", "errors")} == {
                            k: reference.get(k) for k in ("data", "errors")
                        }, "differs from the primary's"
                        if check is not None:
                            check(answer["data"][field], tenant, w)
                    except (AssertionError, KeyError, TypeError) as exc:
                        failures.append((tenant.name, field, repr(exc)[:300]))
            assert not failures, "\n".join(map(str, failures))
    name = router_of(api).standbys[0].name
    for tenant in world:
        _, db = await explained(api, tenant.key, TOTALS)
        assert db["answeredBy"] == name
    # most answers came from the standby (a wait beyond its bound would send one elsewhere)
    assert router_of(api).standbys[0].reads - before > len(CASES)


async def test_a_report_run_renders_from_the_standby(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = api.services.db
    routes: list[Any] = []
    routed_reads = db.standby_reads

    @contextmanager
    def spy() -> Iterator[Any]:
        with routed_reads() as route:
            routes.append(route)
            yield route

    monkeypatch.setattr(db, "standby_reads", spy)
    key = await api.key()
    await api.ingest(key, [llm("r1", provider="openai", cost_usd=1.25)])
    fields = {
        "name": "Now",
        "schedule": "0 8 * * 1",
        "range": "LAST_24H",
        "sections": [{"kind": "BREAKDOWN", "dimension": "PROVIDER"}],
        "formats": ["CSV"],
    }
    report = (await api.data(key, CREATE, {"i": fields}))["createReport"]["report"]
    mutation = "mutation($id: ID!) { runReport(id: $id) { run { id } } }"
    await api.data(key, mutation, {"id": report["id"]})
    await until(lambda: bool(routes) and routes[0].answered is not None, 60.0)
    # the run's tables were read from the standby, and hold the event ingested before it
    assert routes[0].answered.database == router_of(api).standbys[0].name
    for _ in range(600):
        runs = (await api.data(key, RUNS, {"id": report["id"]}))["report"]["runs"]["nodes"]
        if runs[0]["status"] != "RUNNING":
            break
        await asyncio.sleep(0.1)
    assert runs[0]["status"] == "SUCCEEDED", runs[0]
    url = runs[0]["files"][0]["url"]
    response = await api.client.get(url, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    rows = list(csv.DictReader(io.StringIO(archive.read(archive.namelist()[0]).decode())))
    assert [(r["Provider"], float(r["Cost (USD)"])) for r in rows] == [("openai", 1.25)]
