"""Webhooks: signed JSON POSTs to a real HTTP server on loopback, retried with exponential
backoff after failures, given up after the last attempt, every attempt in `webhookDeliveries`;
MANAGE only, and each workspace sees only its own endpoints and deliveries."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from sqlalchemy import update

from tallyql.auth.principal import Role
from tallyql.config import Settings
from tallyql.storage.live_tables import webhook_deliveries
from tallyql.webhooks.signing import signature_header, verify
from tests.conftest import Api, running_api
from tests.support.helpers import walk_pages
from tests.support.notify_helpers import (
    BASE,
    CREATE_RULE,
    CREATE_WEBHOOK,
    DELIVERIES,
    alert_on_any_request,
    check_signature,
    deliveries_when,
    fire,
    quiet_settings,
    webhook_receiver,
)
from tests.support.server import free_port

DELETE_WEBHOOK = """mutation($id: ID!) { deleteWebhook(id: $id) {
  deletedId userErrors { field code } } }"""
WEBHOOKS = "{ webhooks { totalCount nodes { id url } } }"
CREATE_BUDGET = """mutation($input: BudgetInput!) { createBudget(input: $input) {
  budget { id } userErrors { field code } } }"""


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return quiet_settings(
        database_url, tmp_path, webhook_backoff_seconds=0.1, webhook_max_attempts=3
    )


async def add_webhook(api: Api, key: str, url: str) -> tuple[str, str]:
    payload = (await api.data(key, CREATE_WEBHOOK, {"input": {"url": url}}))["createWebhook"]
    assert payload["userErrors"] == [] and payload["secret"].startswith("whsec_")
    return payload["webhook"]["id"], payload["secret"]


async def test_retried_with_exponential_backoff_until_it_succeeds(api: Api) -> None:
    key = await api.key()
    with webhook_receiver(fail_first=2) as receiver:
        hook, secret = await add_webhook(api, key, receiver.url)
        rule = await alert_on_any_request(api, key, [hook])
        await fire(api, key)
        first, second, third = await receiver.wait_for(3)
        assert [r.answered for r in (first, second, third)] == [500, 500, 200]
        # backoff 0.1 s, doubling: the second retry waits twice as long as the first
        assert second.at - first.at >= 0.1
        assert third.at - second.at >= 0.2
        for request in (first, second, third):
            check_signature(secret, request)
            assert request.path == "/hook"
            assert request.headers["X-Tallyql-Event"] == "alert.firing"
            assert request.body == first.body  # the same bytes each time
        delivery_ids = {r.headers["X-Tallyql-Delivery"] for r in (first, second, third)}
        body = orjson.loads(first.body)
        assert delivery_ids == {body["id"]}
        assert (body["type"], body["data"]["ruleId"], body["data"]["state"]) == (
            "alert.firing", rule, "FIRING"
        )  # fmt: skip
        assert (body["data"]["value"], body["data"]["threshold"]) == (1, 0)

        (node,) = await deliveries_when(api, key, 1)
        assert node["id"] == body["id"] and node["payload"] == body
        assert (node["webhookId"], node["url"], node["eventType"]) == (
            hook, receiver.url, "alert.firing"
        )  # fmt: skip
        assert (node["status"], node["attempts"], node["lastStatusCode"], node["lastError"]) == (
            "SUCCEEDED", 3, 200, None
        )  # fmt: skip
        assert node["nextAttemptAt"] is None and node["deliveredAt"] is not None
        log = node["attemptLog"]
        assert [(a["statusCode"], a["error"]) for a in log] == [
            (500, "HTTP 500"), (500, "HTTP 500"), (200, None)
        ]  # fmt: skip
        at = [datetime.fromisoformat(a["at"]) for a in log]
        assert at[1] - at[0] >= timedelta(seconds=0.1)
        assert at[2] - at[1] >= timedelta(seconds=0.2)

        assert api.services.live is not None  # the rule resolves: one more delivery
        await api.services.live.alerts.evaluate_all(BASE + timedelta(minutes=10))
        resolved = (await receiver.wait_for(4))[3]
        check_signature(secret, resolved)
        assert orjson.loads(resolved.body)["data"]["state"] == "OK"
        done = await deliveries_when(api, key, 2, status="SUCCEEDED")
        assert [n["eventType"] for n in done] == ["alert.resolved", "alert.firing"]  # newest first
        failed = (await api.data(key, DELIVERIES, {"status": "FAILED"}))["webhookDeliveries"]
        assert failed["totalCount"] == 0


async def test_given_up_after_the_last_attempt(api: Api) -> None:
    key = await api.key()
    with webhook_receiver(fail_first=100) as receiver:
        failing, _ = await add_webhook(api, key, receiver.url)
        closed, _ = await add_webhook(api, key, f"http://127.0.0.1:{free_port()}/nobody")
        await alert_on_any_request(api, key, [failing, closed])
        await fire(api, key)
        nodes = await deliveries_when(api, key, 2)
        assert len(receiver.snapshot()) == 3  # max_attempts=3, then no more
        by_hook = {n["webhookId"]: n for n in nodes}
        for hook in (failing, closed):
            node = by_hook[hook]
            assert (node["status"], node["attempts"], node["deliveredAt"]) == ("FAILED", 3, None)
            assert len(node["attemptLog"]) == 3 and node["nextAttemptAt"] is None
        assert [a["statusCode"] for a in by_hook[failing]["attemptLog"]] == [500, 500, 500]
        assert [a["statusCode"] for a in by_hook[closed]["attemptLog"]] == [None] * 3
        assert by_hook[closed]["lastError"].startswith("ConnectError")
        one = (await api.data(key, DELIVERIES, {"hook": closed}))["webhookDeliveries"]
        assert [n["webhookId"] for n in one["nodes"]] == [closed]
        # paged one at a time through `after`: the same deliveries in the same order
        walked = await walk_pages(api, key, "webhookDeliveries", "id")
        assert [n["id"] for n in walked] == [n["id"] for n in nodes]


def test_signatures_verify_only_the_exact_body_and_a_recent_time() -> None:
    body = b'{"a":1}'
    now = int(time.time())
    header = signature_header("s3cret", now, body)
    assert verify("s3cret", header, body)
    assert not verify("s3cret", header, b'{"a":2}')
    assert not verify("other", header, body)
    assert not verify("s3cret", signature_header("s3cret", now - 3600, body), body)
    assert not verify("s3cret", "v1=abc", body)


async def test_manage_only_validated_and_isolated(api: Api) -> None:
    a = await api.key("acme")
    member = await api.key("acme", Role.MEMBER)
    viewer = await api.key("acme", Role.VIEWER)
    b = await api.key("globex")
    with webhook_receiver() as receiver:
        hook, _ = await add_webhook(api, member, receiver.url)  # MANAGE is enough
        for query, variables in (
            (CREATE_WEBHOOK, {"input": {"url": receiver.url}}),
            (DELETE_WEBHOOK, {"id": hook}),
            (WEBHOOKS, {}),
            (DELIVERIES, {}),
        ):
            body = await api.graphql(viewer, query, variables)
            assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"]
        for url in ("ftp://example.com/x", "not a url", "http:///nohost"):
            payload = await api.data(a, CREATE_WEBHOOK, {"input": {"url": url}})
            assert payload["createWebhook"]["userErrors"] == [{"field": "url", "code": "INVALID"}]

        await alert_on_any_request(api, a, [hook])
        await fire(api, a)
        await receiver.wait_for(1)
        assert (await api.data(a, DELIVERIES, {}))["webhookDeliveries"]["totalCount"] == 1
        assert (await api.data(b, WEBHOOKS))["webhooks"] == {"totalCount": 0, "nodes": []}
        theirs = (await api.data(b, DELIVERIES, {"hook": hook}))["webhookDeliveries"]
        assert theirs["totalCount"] == 0
        assert (await api.data(b, DELIVERIES, {}))["webhookDeliveries"]["totalCount"] == 0
        gone = (await api.data(b, DELETE_WEBHOOK, {"id": hook}))["deleteWebhook"]
        assert gone["userErrors"] == [{"field": "id", "code": "NOT_FOUND"}]
        steal = {"name": "x", "amountUsd": 1, "webhookIds": [hook]}
        stolen = (await api.data(b, CREATE_BUDGET, {"input": steal}))["createBudget"]
        assert stolen["userErrors"] == [{"field": "webhookIds", "code": "INVALID"}]
        rule = {"name": "x", "metric": "REQUESTS", "windowMinutes": 5, "operator": "GT",
                "threshold": 0, "webhookIds": [hook]}  # fmt: skip
        stolen = (await api.data(b, CREATE_RULE, {"input": rule}))["createAlertRule"]
        assert stolen["userErrors"] == [{"field": "webhookIds", "code": "INVALID"}]
        mine = (await api.data(a, WEBHOOKS))["webhooks"]
        assert mine == {"totalCount": 1, "nodes": [{"id": hook, "url": receiver.url}]}
        deleted = (await api.data(a, DELETE_WEBHOOK, {"id": hook}))["deleteWebhook"]
        assert deleted == {"deletedId": hook, "userErrors": []}
        assert (await api.data(a, WEBHOOKS))["webhooks"]["totalCount"] == 0


async def test_a_retry_after_the_webhook_was_deleted_fails(
    database_url: str, tmp_path: Path, db_kind: str
) -> None:
    settings = quiet_settings(database_url, tmp_path, webhook_backoff_seconds=600)
    async with running_api(settings, db_kind) as api:
        key = await api.key()
        with webhook_receiver(fail_first=1) as receiver:
            hook, _ = await add_webhook(api, key, receiver.url)
            await alert_on_any_request(api, key, [hook])
            await fire(api, key)
            for _ in range(500):  # the first attempt failed; the retry is ten minutes away
                (node,) = (await api.data(key, DELIVERIES, {}))["webhookDeliveries"]["nodes"]
                if node["attempts"] == 1:
                    break
                await asyncio.sleep(0.02)
            assert (node["status"], node["lastStatusCode"]) == ("PENDING", 500)
            wait = datetime.fromisoformat(node["nextAttemptAt"]) - datetime.now(UTC)
            assert timedelta(seconds=590) < wait <= timedelta(seconds=600)
            deleted = (await api.data(key, DELETE_WEBHOOK, {"id": hook}))["deleteWebhook"]
            assert deleted["userErrors"] == []
            async with api.services.db.write() as conn:  # make the retry due now
                await conn.execute(
                    update(webhook_deliveries).values(next_attempt_at=datetime.now(UTC))
                )
            assert api.services.live is not None
            api.services.live.webhooks.notify()
            (node,) = await deliveries_when(api, key, 1)
            assert (node["status"], node["attempts"], node["lastError"]) == (
                "FAILED", 2, "the webhook was deleted"
            )  # fmt: skip
            assert [a["statusCode"] for a in node["attemptLog"]] == [500, None]
            assert len(receiver.snapshot()) == 1  # nothing was sent for the deleted endpoint
