"""Health alert rules watch the server itself, every replica of it, through the shared
database: a writer held mid-batch fires WRITER_STALL_SECONDS once (Slack, PagerDuty, email,
signed webhook) and resolves when it commits; another replica's backlog and silence count as
much as this one's; compaction left undone fires COMPACTION_LAG_SECONDS on PostgreSQL (SQLite
stages nothing: always 0); jobs /health calls degraded are counted over replicas; only the
operator creates, changes or deletes them, and each change is audited; two real `tallyql serve`
processes each record their heartbeat in the shared database."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from tallyql.alerts.health import SILENT_AFTER_BEATS
from tallyql.auth.principal import Role
from tallyql.clock import clock
from tallyql.config import Settings
from tallyql.storage.database import Database
from tallyql.storage.live_tables import alert_firings
from tallyql.storage.rollups.compaction import compact
from tallyql.storage.server_health import HEARTBEAT_EXPIRY, Heartbeat, beat, heartbeats
from tallyql.storage.tables import audit_events
from tallyql.webhooks.signing import SIGNATURE_HEADER, verify
from tests.conftest import Api
from tests.support.helpers import iso, llm
from tests.support.notify_helpers import (
    Mailbox,
    Receiver,
    quiet_settings,
)
from tests.support.server import reset_database, start_server

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
HEARTBEAT = 5.0
RULE = "id name metric health windowMinutes operator threshold state lastValue"
CREATE = f"""mutation($i: AlertRuleInput!) {{ createAlertRule(input: $i) {{
  alertRule {{ {RULE} }} userErrors {{ field message }} }} }}"""
UPDATE = """mutation($id: ID!, $i: AlertRulePatch!) { updateAlertRule(id: $id, input: $i) {
  alertRule { id threshold } userErrors { field message } } }"""
DELETE = "mutation($id: ID!) { deleteAlertRule(id: $id) { deletedId userErrors { field } } }"
ONE = f"query($id: ID!) {{ alertRule(id: $id) {{ {RULE} }} }}"
FIRINGS = """query($r: ID) { alertFirings(ruleId: $r, first: 10) { nodes {
  metric health windowMinutes threshold value resolvedValue state } } }"""
HOOK = """mutation($i: WebhookInput!) { createWebhook(input: $i) {
  webhook { id } secret userErrors { field message } } }"""


@pytest.fixture
def settings(database_url: str, tmp_path: Path, mailbox: Mailbox) -> Settings:
    # no heartbeat or compaction loops: the tests beat and compact at the moments they choose
    return quiet_settings(
        database_url,
        tmp_path,
        smtp_url=f"smtp://127.0.0.1:{mailbox.port}",
        mail_from="alerts@tallyql.example",
        heartbeat_seconds=0.0,
        rollup_compaction_seconds=0.0,
    )


async def _rule(api: Api, key: str, **fields: Any) -> dict[str, Any]:
    payload = await api.data(key, CREATE, {"i": {"cooldownMinutes": 0, **fields}})
    assert payload["createAlertRule"]["userErrors"] == [], payload
    return payload["createAlertRule"]["alertRule"]


async def _hook(api: Api, key: str, **fields: Any) -> tuple[str, str | None]:
    payload = (await api.data(key, HOOK, {"i": fields}))["createWebhook"]
    assert payload["userErrors"] == [], payload
    return payload["webhook"]["id"], payload["secret"]


def _codes(body: dict[str, Any]) -> list[str]:
    return [e["extensions"]["code"] for e in body.get("errors", [])]


async def _evaluate(api: Api, at: datetime) -> list[dict[str, Any]]:
    assert api.services.live is not None
    return await api.services.live.alerts.evaluate_all(at)


async def _beat(api: Api, at: datetime) -> None:
    assert api.services.heartbeat is not None
    clock.set(at, tick=False)
    await api.services.heartbeat.run_once()


@pytest.fixture(autouse=True)
def _clock_back() -> Iterator[None]:
    yield
    clock.reset()


@pytest.fixture
async def gate(api: Api) -> AsyncIterator[asyncio.Event]:
    """Holds the writer's transactions while clear; opened before the server stops."""
    opened = asyncio.Event()
    yield opened
    opened.set()


async def test_a_stalled_writer_fires_once_on_every_channel_and_resolves(
    api: Api,
    receiver: Receiver,
    mailbox: Mailbox,
    monkeypatch: pytest.MonkeyPatch,
    gate: asyncio.Event,
) -> None:
    operator = await api.key("default")  # TALLYQL_OPERATOR_WORKSPACE's admin
    tenant = await api.key("acme")
    signed, secret = await _hook(api, operator, url=receiver.url + "/signed")
    slack, _ = await _hook(api, operator, url=receiver.url + "/slack", format="SLACK")
    pd, _ = await _hook(
        api, operator, url=receiver.url + "/pd", format="PAGERDUTY", routingKey="R0UT1NGKEY42"
    )
    mail, _ = await _hook(api, operator, url="mailto:oncall@corp.example", format="EMAIL")
    rule = await _rule(
        api,
        operator,
        name="writer stalled",
        health="WRITER_STALL_SECONDS",
        operator="GT",
        threshold=2,
        webhookIds=[signed, slack, pd, mail],
    )
    assert (rule["metric"], rule["health"], rule["windowMinutes"]) == (
        None,
        "WRITER_STALL_SECONDS",
        0,
    )

    # the writer's transaction hangs (a lock, a stuck disk) until the gate opens
    writer = api.services.writer
    entered = asyncio.Event()
    write = writer.batches.write

    async def held(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        await gate.wait()
        return await write(*args, **kwargs)

    monkeypatch.setattr(writer.batches, "write", held)
    clock.set(T0, tick=False)
    events = [llm(f"e{i}", timestamp=iso(T0 - timedelta(minutes=1))) for i in range(3)]
    ingest = asyncio.create_task(api.ingest(tenant, events))
    await entered.wait()
    assert (writer.pending_events, writer.oldest_pending_at) == (3, T0)

    await _beat(api, T0 + timedelta(seconds=1))
    assert await _evaluate(api, T0 + timedelta(seconds=1)) == []  # 1 s: not above 2
    await _beat(api, T0 + timedelta(seconds=5))
    fired = await _evaluate(api, T0 + timedelta(seconds=5))
    assert [(n["state"], n["value"], n["health"], n["metric"]) for n in fired] == [
        ("firing", 5.0, "writer_stall_seconds", None)
    ]
    # still stalled at the next evaluations: no second firing, no second notification
    assert await _evaluate(api, T0 + timedelta(seconds=6)) == []
    await _beat(api, T0 + timedelta(seconds=8))
    assert await _evaluate(api, T0 + timedelta(seconds=8)) == []
    got = await receiver.wait_for(3)
    await asyncio.sleep(0.3)
    assert len(receiver.snapshot()) == 3

    by_path = {r.path: r for r in got}
    envelope = orjson.loads(by_path["/hook/signed"].body)
    assert secret is not None
    header = by_path["/hook/signed"].headers[SIGNATURE_HEADER]
    signed_at = float(header.split(",")[0].removeprefix("t="))  # the test's clock, not today
    assert verify(secret, header, by_path["/hook/signed"].body, now=signed_at)
    data = envelope["data"]
    instance = api.services.heartbeat.instance_id if api.services.heartbeat else ""
    assert envelope["type"] == "alert.firing"
    assert (data["health"], data["unit"], data["metric"], data["value"]) == (
        "WRITER_STALL_SECONDS",
        "seconds",
        None,
        5.0,
    )
    assert [(r["instanceId"], r["value"], r["heartbeatSecondsAgo"]) for r in data["replicas"]] == [
        (instance, 5.0, 0.0)
    ]
    text = orjson.loads(by_path["/hook/slack"].body)["text"]
    assert text.startswith(
        "[tallyql] Alert firing: writer stalled (WRITER_STALL_SECONDS GT 2; value 5)"
    )
    trigger = orjson.loads(by_path["/hook/pd"].body)
    assert trigger["event_action"] == "trigger"
    assert trigger["payload"]["custom_details"]["replicas"][0]["value"] == 5.0
    (to, message), *_ = await mailbox.wait_for(1)
    assert to == ["oncall@corp.example"]
    assert message["Subject"].strip() == text.splitlines()[0]  # a long subject is folded

    # the transaction goes through: nothing waits, the rule resolves with value 0
    gate.set()
    assert (await ingest)["accepted"] == 3
    assert writer.pending_events == 0 and writer.stats.last_commit_at == T0 + timedelta(seconds=8)
    await _beat(api, T0 + timedelta(seconds=9))
    resolved = await _evaluate(api, T0 + timedelta(seconds=9))
    assert [(n["state"], n["value"]) for n in resolved] == [("ok", 0.0)]
    got = await receiver.wait_for(6)
    later = {r.path: orjson.loads(r.body) for r in got[3:]}
    assert later["/hook/signed"]["type"] == "alert.resolved"
    assert later["/hook/signed"]["data"]["value"] == 0.0
    assert later["/hook/pd"] == {
        "routing_key": "R0UT1NGKEY42",
        "event_action": "resolve",
        "dedup_key": trigger["dedup_key"],
    }
    assert later["/hook/slack"]["text"].startswith("[tallyql] Alert resolved: writer stalled")
    await mailbox.wait_for(2)

    firings = (await api.data(operator, FIRINGS, {"r": rule["id"]}))["alertFirings"]["nodes"]
    assert firings == [
        {
            "metric": None,
            "health": "WRITER_STALL_SECONDS",
            "windowMinutes": 0,
            "threshold": 2.0,
            "value": 5.0,
            "resolvedValue": 0.0,
            "state": "RESOLVED",
        }
    ]
    # the tenant whose events were held sees none of it
    assert (await api.data(tenant, FIRINGS, {"r": None}))["alertFirings"]["nodes"] == []


async def test_every_replica_counts_and_a_silent_one_keeps_counting(api: Api) -> None:
    """Two more processes' heartbeats, as they write them: the rules read the largest backlog
    and stall over all replicas; a replica silent for three intervals counts its silence; one
    silent for HEARTBEAT_EXPIRY is removed by the next heartbeat of any other."""
    operator = await api.key("default")
    backlog = await _rule(
        api, operator, name="backlog", health="WRITER_BACKLOG_EVENTS", operator="GTE",
        threshold=1000,
    )  # fmt: skip
    stall = await _rule(
        api, operator, name="stall", health="WRITER_STALL_SECONDS", operator="GT", threshold=30
    )
    db = api.services.db

    def other(name: str, at: datetime, pending: int, oldest: datetime | None) -> Heartbeat:
        return Heartbeat(
            instance_id=name,
            host="replica-" + name,
            pid=4242,
            started_at=T0 - timedelta(hours=1),
            heartbeat_at=at,
            writer_pending_events=pending,
            writer_oldest_pending_at=oldest,
            writer_last_commit_at=T0 - timedelta(seconds=20),
            writer_events_committed=10,
            degraded=[],
        )

    await _beat(api, T0)  # this process: idle
    await beat(db, other("b", T0, 1500, T0 - timedelta(seconds=4)))
    await beat(db, other("c", T0, 200, T0 - timedelta(seconds=10)))
    fired = await _evaluate(api, T0)
    assert [(n["rule_id"], n["value"]) for n in fired] == [(backlog["id"], 1500.0)]
    # c committed 20 s ago and its oldest event waits since 10 s ago: stalled 10 s, at T0
    one = (await api.data(operator, ONE, {"id": stall["id"]}))["alertRule"]
    assert (one["state"], one["lastValue"]) == ("OK", 10.0)

    # b catches up; c goes silent with events waiting: its silence counts after three beats
    later = T0 + timedelta(seconds=SILENT_AFTER_BEATS * HEARTBEAT)
    await _beat(api, later)
    await beat(db, other("b", later, 0, None))
    notices = await _evaluate(api, later)  # c silent 15 s: not yet silent by the rule
    assert [(n["rule_id"], n["state"], n["value"]) for n in notices] == [
        (backlog["id"], "ok", 200.0)
    ]
    much_later = T0 + timedelta(seconds=40)
    await _beat(api, much_later)
    await beat(db, other("b", much_later, 0, None))
    notices = await _evaluate(api, much_later)  # c: 40 + 10 s since its oldest waiting event
    assert [(n["rule_id"], n["state"], n["value"]) for n in notices] == [
        (stall["id"], "firing", 50.0)
    ]

    # c never comes back: expired by this process's next heartbeat, and the stall resolves
    gone = T0 + HEARTBEAT_EXPIRY + timedelta(seconds=1)
    await beat(db, other("b", gone, 0, None))
    await _beat(api, gone)
    assert sorted(h.instance_id for h in await heartbeats(db)) == sorted(
        ["b", api.services.heartbeat.instance_id if api.services.heartbeat else ""]
    )
    notices = await _evaluate(api, gone)
    assert [(n["rule_id"], n["state"], n["value"]) for n in notices] == [(stall["id"], "ok", 0.0)]


async def test_degraded_jobs_are_counted_over_replicas(api: Api) -> None:
    operator = await api.key("default")
    rule = await _rule(
        api, operator, name="jobs", health="JOBS_DEGRADED", operator="GTE", threshold=1
    )
    api.services.reports["retention"] = {"ok": False, "degraded": "failed 3 runs in a row"}
    await _beat(api, T0)
    fired = await _evaluate(api, T0)
    assert [(n["rule_id"], n["value"]) for n in fired] == [(rule["id"], 1.0)]
    api.services.reports["retention"] = {"ok": True}
    await _beat(api, T0 + timedelta(seconds=5))
    resolved = await _evaluate(api, T0 + timedelta(seconds=5))
    assert [(n["state"], n["value"]) for n in resolved] == [("ok", 0.0)]


async def test_compaction_behind_fires_and_resolves(api: Api, db_kind: str) -> None:
    """No compaction job runs here: staged rollup rows wait until the test compacts them.
    The value is checked against the real time between the ingest and the evaluation."""
    operator = await api.key("default")
    tenant = await api.key("acme")
    rule = await _rule(
        api, operator, name="compaction", health="COMPACTION_LAG_SECONDS", operator="GT",
        threshold=1,
    )  # fmt: skip
    before = time.monotonic()
    assert (await api.ingest(tenant, [llm("a"), llm("b")]))["accepted"] == 2
    committed = time.monotonic()
    await asyncio.sleep(1.3)
    evaluated = time.monotonic()
    notices = await _evaluate(api, datetime.now(UTC))
    if db_kind == "sqlite":  # the writer folds rollups as it commits: nothing ever waits
        assert notices == []
        one = (await api.data(operator, ONE, {"id": rule["id"]}))["alertRule"]
        assert (one["state"], one["lastValue"]) == ("OK", 0.0)
        return
    ((notice),) = notices
    assert notice["state"] == "firing"
    # staged in the ingest's transaction: after `before`, before `committed`
    assert evaluated - committed - 0.05 <= notice["value"] <= time.monotonic() - before + 0.05
    assert await compact(api.services.db, wait=True) > 0
    resolved = await _evaluate(api, datetime.now(UTC))
    assert [(n["state"], n["value"]) for n in resolved] == [("ok", 0.0)]


async def test_only_the_operator_manages_health_rules_and_changes_are_audited(api: Api) -> None:
    operator = await api.key("default")
    member = await api.key("default", Role.MEMBER)
    viewer = await api.key("default", Role.VIEWER)
    tenant_admin = await api.key("acme")
    fields = {"name": "stall", "health": "WRITER_STALL_SECONDS", "operator": "GT", "threshold": 30}
    for key in (member, tenant_admin):
        body = await api.graphql(key, CREATE, {"i": fields})
        assert _codes(body) == ["FORBIDDEN"], body
    body = await api.graphql(viewer, CREATE, {"i": fields})
    assert _codes(body) == ["FORBIDDEN"]

    rule = await _rule(api, operator, **fields)
    assert (await api.data(viewer, ONE, {"id": rule["id"]}))["alertRule"]["health"] == (
        "WRITER_STALL_SECONDS"
    )
    body = await api.graphql(member, UPDATE, {"id": rule["id"], "i": {"threshold": 1}})
    assert _codes(body) == ["FORBIDDEN"]
    body = await api.graphql(member, DELETE, {"id": rule["id"]})
    assert _codes(body) == ["FORBIDDEN"]

    # a health rule takes no metric, window or filter; a metric rule cannot become one
    errors = (await api.data(operator, CREATE, {"i": {**fields, "metric": "REQUESTS"}}))[
        "createAlertRule"
    ]["userErrors"]
    assert [e["field"] for e in errors] == ["metric"]
    errors = (await api.data(operator, CREATE, {"i": {**fields, "windowMinutes": 5}}))[
        "createAlertRule"
    ]["userErrors"]
    assert [e["field"] for e in errors] == ["windowMinutes"]
    plain = await _rule(
        api, member, name="traffic", metric="REQUESTS", windowMinutes=5, operator="GT", threshold=0
    )
    patch = {"id": plain["id"], "i": {"health": "JOBS_DEGRADED"}}
    errors = (await api.data(operator, UPDATE, patch))["updateAlertRule"]["userErrors"]
    assert [e["field"] for e in errors] == ["health"]

    changed = await api.data(operator, UPDATE, {"id": rule["id"], "i": {"threshold": 60}})
    assert changed["updateAlertRule"]["alertRule"]["threshold"] == 60.0
    deleted = await api.data(operator, DELETE, {"id": rule["id"]})
    assert deleted["deleteAlertRule"]["deletedId"] == rule["id"]
    async with api.services.db.read() as conn:
        audited = (
            await conn.execute(
                select(audit_events.c.action, audit_events.c.details)
                .where(
                    audit_events.c.resource_type == "alert_rule",
                    audit_events.c.resource_id == rule["id"],
                )
                .order_by(audit_events.c.ts)
            )
        ).all()
        assert [a for a, _ in audited] == ["create", "update", "delete"]
        assert audited[0][1]["health"] == "writer_stall_seconds"
        assert audited[1][1]["threshold"] == 60.0
        left = (await conn.execute(select(alert_firings))).all()
        assert left == []


async def test_two_serve_processes_each_record_a_heartbeat(
    database_url: str, tmp_path: Path
) -> None:
    """Two real `tallyql serve` processes on one database: both heartbeats are there (so a
    health rule evaluated by either sees both writers); one stopped cleanly takes its own
    away, one killed stays until it expires."""
    await reset_database(database_url)
    env = {"TALLYQL_HEARTBEAT_SECONDS": "0.2"}
    first = start_server(database_url, tmp_path, "first", extra_env=env)
    second = start_server(database_url, tmp_path, "second", extra_env=env)
    db = Database(database_url)
    try:

        async def pids() -> set[int]:
            return {h.pid for h in await heartbeats(db)}

        want = {first.process.pid, second.process.pid}
        for _ in range(300):  # both beat within a second of starting
            if await pids() == want:
                break
            await asyncio.sleep(0.1)
        assert await pids() == want
        second.stop()
        assert await pids() == {first.process.pid}
        first.kill()
        await asyncio.sleep(0.5)
        assert await pids() == {first.process.pid}  # nobody said goodbye: it waits to expire
    finally:
        first.stop()
        second.stop()
        await db.dispose()
