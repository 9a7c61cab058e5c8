"""Limit warnings: crossing a threshold announces it exactly once per period (on the bus, in
the audit trail, to the webhooks): never again on further evaluation, after a restart, or with
two replicas on one database; and end to end over a real subscription."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select

from tallyql.auth.principal import Role
from tallyql.budgets.store import (
    BudgetFields,
    create_budget,
    crossed_thresholds,
    update_budget,
)
from tallyql.config import Settings
from tallyql.engine.periods import Period
from tallyql.live.subscriber import LIMIT_WARNING
from tallyql.services import Services, start_services
from tallyql.storage.audit import Actor
from tallyql.storage.live_tables import budget_crossings, webhook_deliveries
from tallyql.storage.tables import audit_events
from tallyql.webhooks.store import insert_webhook
from tests.conftest import _reset_postgres
from tests.support.helpers import iso, workspace_id_of
from tests.support.live_client import live_server, subscribe
from tests.support.notify_helpers import Notices, check_signature, quiet_settings, webhook_receiver

NOV = datetime(2025, 11, 20, 12, tzinfo=UTC)  # "now" in November 2025 (UTC month)
DEC = datetime(2025, 12, 2, 12, tzinfo=UTC)
ACTOR = Actor("test")


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return quiet_settings(database_url, tmp_path)


@asynccontextmanager
async def running(settings: Settings, reset: bool = False) -> AsyncIterator[Services]:
    """Services on the test database (emptied first when `reset`)."""
    if reset and settings.database_url.startswith("postgresql"):
        await _reset_postgres(settings.database_url)
    svc = await start_services(settings)
    try:
        yield svc
    finally:
        await svc.stop()


async def spend(svc: Services, workspace_id: int, name: str, usd: float, at: datetime) -> None:
    event = {"id": name, "timestamp": iso(at), "provider": "p", "model": "m", "cost_usd": usd}
    result = await svc.ingest.ingest(workspace_id, [event])
    assert result.accepted == 1, result.as_dict()


async def evaluate(svc: Services, now: datetime) -> list[tuple[str, int]]:
    assert svc.live is not None
    return [(n["budget_id"], n["threshold"]) for n in await svc.live.budgets.evaluate(now=now)]


async def delivered(svc: Services, count: int) -> list[dict[str, Any]]:
    """The deliveries, once `count` of them have succeeded."""
    for _ in range(500):
        async with svc.db.read() as conn:
            rows = (await conn.execute(select(webhook_deliveries))).mappings().all()
        if sum(r["status"] == "succeeded" for r in rows) >= count:
            return [dict(r) for r in rows]
        await asyncio.sleep(0.02)
    raise AssertionError(f"deliveries did not succeed: {rows}")


async def audited_warnings(svc: Services) -> list[tuple[str, int, float]]:
    async with svc.db.read() as conn:
        rows = await conn.execute(
            select(audit_events.c.resource_id, audit_events.c.details)
            .where(audit_events.c.resource_type == "budget", audit_events.c.action == "execute")
            .order_by(audit_events.c.ts)
        )
        return [
            (r.resource_id, r.details["threshold"], r.details["spendUsd"])
            for r in rows
            if r.details["event"] == "limit_warning"
        ]


async def test_once_per_threshold_per_period_even_after_a_restart(
    settings: Settings, db_kind: str
) -> None:
    with webhook_receiver() as receiver:
        async with running(settings, reset=True) as svc:
            key, _ = await svc.keys.create("acme", Role.ADMIN, "t")
            ws = await workspace_id_of(svc, key)
            async with svc.db.write() as conn:
                hook, secret = await insert_webhook(
                    conn, ws, receiver.url, None, allow_private=True
                )
            fields = BudgetFields(
                name="monthly", amount_usd=10, period=Period.MONTH, webhook_ids=[hook["id"]]
            )
            budget = await create_budget(svc.db, ws, fields, ACTOR)
            bus = Notices(svc, ws, frozenset({LIMIT_WARNING}))
            b = budget.id

            await spend(svc, ws, "a", 3.0, datetime(2025, 11, 3, tzinfo=UTC))
            assert await evaluate(svc, NOV) == []
            await spend(svc, ws, "b", 2.5, datetime(2025, 11, 10, tzinfo=UTC))
            assert await evaluate(svc, NOV) == [(b, 50)]
            assert await evaluate(svc, NOV) == []
            await spend(svc, ws, "c", 3.0, datetime(2025, 11, 15, tzinfo=UTC))
            assert await evaluate(svc, NOV) == [(b, 80)]
            assert await evaluate(svc, NOV) == []
            first = await bus.wait_for(2)
            assert [(k, v["threshold"], v["spend_nanousd"]) for k, v in first] == [
                ("limit_warning", 50, 5_500_000_000),
                ("limit_warning", 80, 8_500_000_000),
            ]
            assert first[0][1]["percent_used"] == 55.0
            assert first[0][1]["amount_nanousd"] == 10_000_000_000
            assert first[0][1]["period_start_us"] == 1761955200_000_000  # 2025-11-01 UTC

            await delivered(svc, 2)  # (a stop mid-attempt would hold a delivery for its lease)

        async with running(settings) as svc:  # a restart on the same database
            assert await evaluate(svc, NOV) == []
            bus = Notices(svc, ws, frozenset({LIMIT_WARNING}))
            await spend(svc, ws, "d", 2.0, datetime(2025, 11, 18, tzinfo=UTC))
            assert await evaluate(svc, NOV) == [(b, 100)]
            assert await evaluate(svc, NOV) == []
            assert await evaluate(svc, DEC) == []  # a new period, nothing spent yet
            await spend(svc, ws, "e", 8.5, datetime(2025, 12, 1, 7, tzinfo=UTC))
            assert await evaluate(svc, DEC) == [(b, 50), (b, 80)]  # both at once
            assert await evaluate(svc, DEC) == []
            assert await evaluate(svc, NOV) == []  # a late look at November changes nothing
            second = await bus.wait_for(3)
            assert [v["threshold"] for _, v in second] == [100, 50, 80]
            assert bus.drain() == []

            nov_start, dec_start = (
                datetime(2025, 11, 1, tzinfo=UTC),
                datetime(2025, 12, 1, tzinfo=UTC),
            )
            assert await crossed_thresholds(svc.db, budget, nov_start) == [50, 80, 100]
            assert await crossed_thresholds(svc.db, budget, dec_start) == [50, 80]
            async with svc.db.read() as conn:
                crossings = (await conn.execute(select(budget_crossings))).mappings().all()
                deliveries = (await conn.execute(select(webhook_deliveries))).mappings().all()
            seen = sorted(
                (c["period_start"], c["threshold"], c["spend_nanousd"]) for c in crossings
            )
            assert seen == [
                (nov_start, 50, 5_500_000_000),
                (nov_start, 80, 8_500_000_000),
                (nov_start, 100, 10_500_000_000),
                (dec_start, 50, 8_500_000_000),
                (dec_start, 80, 8_500_000_000),
            ]  # fmt: skip
            assert await audited_warnings(svc) == [
                (b, 50, 5.5), (b, 80, 8.5), (b, 100, 10.5), (b, 50, 8.5), (b, 80, 8.5)
            ]  # fmt: skip
            assert len(deliveries) == 5
            got = await receiver.wait_for(5)
            bodies = [orjson.loads(r.body) for r in got]
            sent = sorted((d["data"]["periodStart"][:10], d["data"]["threshold"]) for d in bodies)
            assert sent == [
                ("2025-11-01", 50), ("2025-11-01", 80), ("2025-11-01", 100),
                ("2025-12-01", 50), ("2025-12-01", 80),
            ]  # fmt: skip
            assert {d["type"] for d in bodies} == {"budget.limit_warning"}
            assert {d["workspaceId"] for d in bodies} == {ws}
            assert len({d["id"] for d in bodies}) == 5
            for request in got:
                check_signature(secret, request)


async def test_two_replicas_on_one_database_announce_each_crossing_once(
    settings: Settings, db_kind: str
) -> None:
    async with running(settings, reset=True) as one, running(settings) as two:
        key, _ = await one.keys.create("acme", Role.ADMIN, "t")
        ws = await workspace_id_of(one, key)
        async with one.db.write() as conn:
            hook, _ = await insert_webhook(
                conn, ws, "http://127.0.0.1:9/unused", None, allow_private=True
            )
        ids = []
        for n in range(4):
            fields = BudgetFields(name=f"b{n}", amount_usd=10 + n, webhook_ids=[hook["id"]])
            ids.append((await create_budget(one.db, ws, fields, ACTOR)).id)
        buses = [Notices(svc, ws, frozenset({LIMIT_WARNING})) for svc in (one, two)]
        await spend(one, ws, "a", 9.0, NOV)  # 90 %, 81.8 %, 75 % and 69.2 % of the limits
        runs = await asyncio.gather(*(evaluate(s, NOV) for s in (one, two, one, two)))
        announced = sorted(item for run in runs for item in run)
        want = sorted([
            (ids[0], 50), (ids[0], 80), (ids[1], 50), (ids[1], 80), (ids[2], 50), (ids[3], 50)
        ])  # fmt: skip
        assert announced == want
        assert len(await audited_warnings(one)) == len(want)
        async with two.db.read() as conn:
            deliveries = (await conn.execute(select(webhook_deliveries))).all()
            crossings = (await conn.execute(select(budget_crossings))).all()
        assert (len(deliveries), len(crossings)) == (len(want), len(want))
        if db_kind == "postgresql":  # the bus crosses replicas: each subscriber sees all, once
            for bus in buses:
                got = await bus.wait_for(len(want))
                assert sorted((v["budget_id"], v["threshold"]) for _, v in got) == want
            await spend(one, ws, "b", 1.0, NOV)  # later notices, which come after any echo
            later = sorted([(ids[0], 100), (ids[2], 80)])
            assert sorted(await evaluate(two, NOV)) == later
            for bus in buses:
                got = await bus.wait_for(2)
                assert sorted((v["budget_id"], v["threshold"]) for _, v in got) == later
        else:
            got = buses[0].drain() + buses[1].drain()
            assert sorted((v["budget_id"], v["threshold"]) for _, v in got) == want


SUBSCRIPTION = """subscription { events(types: [LIMIT_WARNING]) { __typename
  ... on LimitWarning { budgetId budgetName threshold percentUsed spendUsd limitUsd period
                        periodStart periodEnd at } } }"""
CREATE_WEBHOOK = """mutation($url: String!) { createWebhook(input: {url: $url}) {
  webhook { id } secret userErrors { field } } }"""
CREATE_BUDGET = """mutation($input: BudgetInput!) { createBudget(input: $input) {
  budget { id } userErrors { field } } }"""
BUDGET = "query($id: ID!) { budget(id: $id) { status percentUsed crossedThresholds } }"


async def test_end_to_end_over_a_subscription_and_a_webhook(
    database_url: str, tmp_path: Path, db_kind: str
) -> None:
    """Ingest over HTTP; the monitor (woken by the ingest) announces on the subscription of
    the budget's workspace only, and the webhook receives it after a failed first attempt."""
    settings = quiet_settings(database_url, tmp_path, budget_debounce_seconds=0.05)
    with webhook_receiver(fail_first=1) as receiver:
        async with (
            live_server(settings, db_kind) as server,
            httpx.AsyncClient(base_url=server.url, timeout=30) as http,
        ):
            svc: Services = server.app.state.services

            async def gql(key: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
                headers = {"Authorization": f"Bearer {key}"}
                body = {"query": query, "variables": variables}
                response = await http.post("/graphql", json=body, headers=headers)
                assert "errors" not in response.json(), response.text
                return response.json()["data"]

            async def pay(key: str, name: str, usd: float) -> None:
                event = {"id": name, "provider": "p", "model": "m", "cost_usd": usd}
                headers = {"Authorization": f"Bearer {key}"}
                response = await http.post("/v1/events", json=[event], headers=headers)
                assert response.json()["accepted"] == 1

            a, _ = await svc.keys.create("acme", Role.ADMIN, "a")
            b, _ = await svc.keys.create("globex", Role.ADMIN, "b")
            hook = (await gql(a, CREATE_WEBHOOK, {"url": receiver.url}))["createWebhook"]
            fields = {"name": "A", "amountUsd": 1, "webhookIds": [hook["webhook"]["id"]]}
            budget_a = (await gql(a, CREATE_BUDGET, {"input": fields}))["createBudget"]["budget"]
            fields = {"name": "B", "amountUsd": 2}
            budget_b = (await gql(b, CREATE_BUDGET, {"input": fields}))["createBudget"]["budget"]
            async with (
                subscribe(server, a, SUBSCRIPTION) as sub_a,
                subscribe(server, b, SUBSCRIPTION) as sub_b,
            ):
                assert svc.live is not None
                async with asyncio.timeout(30):  # a regression fails here instead of hanging
                    while svc.live.service.bus.subscriber_count < 2:  # noqa: ASYNC110 (no event)
                        await asyncio.sleep(0.01)
                await pay(a, "a1", 0.6)
                item = await sub_a.next()
                month = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
                assert item == {
                    "__typename": "LimitWarning",
                    "budgetId": budget_a["id"],
                    "budgetName": "A",
                    "threshold": 50,
                    "percentUsed": 60.0,
                    "spendUsd": 0.6,
                    "limitUsd": 1.0,
                    "period": "MONTH",
                    "periodStart": item["periodStart"],
                    "periodEnd": item["periodEnd"],
                    "at": item["at"],
                }
                assert datetime.fromisoformat(item["periodStart"]) == month
                after = (month + timedelta(days=32)).replace(day=1)
                assert datetime.fromisoformat(item["periodEnd"]) == after
                await pay(b, "b1", 1.7)  # globex's first items are its own (85 %: 50 and 80)
                got_b = [await sub_b.next(), await sub_b.next()]
                assert [(i["budgetId"], i["threshold"]) for i in got_b] == [
                    (budget_b["id"], 50),
                    (budget_b["id"], 80),
                ]
                await pay(a, "a2", 0.1)  # 70 %: nothing new
                await pay(a, "a3", 0.35)  # 105 %: 80 and 100, and never 50 again
                got_a = [await sub_a.next(), await sub_a.next()]
                assert [(i["threshold"], i["spendUsd"]) for i in got_a] == [(80, 1.05), (100, 1.05)]
            requests = await receiver.wait_for(4)  # 50 (failed, then retried), 80, 100
            assert [r.answered for r in requests].count(500) == 1
            delivered = [orjson.loads(r.body) for r in requests if r.answered == 200]
            assert sorted(d["data"]["threshold"] for d in delivered) == [50, 80, 100]
            for request in requests:
                check_signature(hook["secret"], request)
            shown = (await gql(a, BUDGET, {"id": budget_a["id"]}))["budget"]
            assert shown == {
                "status": "EXCEEDED",
                "percentUsed": pytest.approx(105.0),
                "crossedThresholds": [50, 80, 100],
            }
            assert [(r[0], r[1]) for r in await audited_warnings(svc)] == [
                (budget_a["id"], 50),
                (budget_b["id"], 50),
                (budget_b["id"], 80),
                (budget_a["id"], 80),
                (budget_a["id"], 100),
            ]


async def test_a_changed_limit_announces_its_thresholds_afresh(
    settings: Settings, db_kind: str
) -> None:
    async with running(settings, reset=True) as svc:
        key, _ = await svc.keys.create("acme", Role.ADMIN, "t")
        ws = await workspace_id_of(svc, key)
        fields = BudgetFields(name="monthly", amount_usd=10, period=Period.MONTH)
        b = (await create_budget(svc.db, ws, fields, ACTOR)).id
        await spend(svc, ws, "a", 9.0, datetime(2025, 11, 3, tzinfo=UTC))
        assert await evaluate(svc, NOV) == [(b, 50), (b, 80)]
        await update_budget(svc.db, ws, b, BudgetFields(name="renamed"), ACTOR)
        assert await evaluate(svc, NOV) == []  # the same limit: nothing new
        await update_budget(svc.db, ws, b, BudgetFields(amount_usd=20), ACTOR)
        assert await evaluate(svc, NOV) == []  # 45 % of the new limit
        await spend(svc, ws, "b", 2.0, datetime(2025, 11, 4, tzinfo=UTC))
        assert await evaluate(svc, NOV) == [(b, 50)]  # 55 % of 20 USD
        await spend(svc, ws, "c", 5.0, datetime(2025, 11, 5, tzinfo=UTC))
        assert await evaluate(svc, NOV) == [(b, 80)]
        assert [t for _, t, _ in await audited_warnings(svc)] == [50, 80, 50, 80]
