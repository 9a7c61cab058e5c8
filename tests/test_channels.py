"""Notification channels beside signed webhooks: Slack-compatible incoming webhooks, PagerDuty
Events API v2 (trigger and resolve under one dedup key) and email through a real SMTP server
(aiosmtpd on loopback); an alert rule's firing and resolution reach each of them, failures
are retried and logged, and a channel is checked when it is created."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from tallyql.config import Settings, load_settings
from tallyql.mail.smtp import Mailer, SmtpServer
from tallyql.webhooks.formats import pagerduty, summary
from tests.conftest import Api
from tests.support.helpers import iso, llm
from tests.support.notify_helpers import (
    REFUSED,
    Mailbox,
    Receiver,
    quiet_settings,
)

BASE = datetime(2025, 11, 19, 12, tzinfo=UTC)
CREATE_HOOK = """mutation($i: WebhookInput!) { createWebhook(input: $i) {
  webhook { id url format } secret userErrors { field message } } }"""
CREATE_RULE = """mutation($i: AlertRuleInput!) { createAlertRule(input: $i) {
  alertRule { id } userErrors { field message } } }"""
DELIVERIES = """query($w: ID) { webhookDeliveries(webhookId: $w, first: 50) { nodes {
  status attempts lastError eventType } } }"""


@pytest.fixture
def settings(database_url: str, tmp_path: Path, mailbox: Mailbox) -> Settings:
    return quiet_settings(
        database_url,
        tmp_path,
        smtp_url=f"smtp://127.0.0.1:{mailbox.port}",
        mail_from="alerts@tallyql.example",
    )


async def _hook(api: Api, key: str, **fields: Any) -> dict[str, Any]:
    payload = (await api.data(key, CREATE_HOOK, {"i": fields}))["createWebhook"]
    assert payload["userErrors"] == [], payload
    return payload


async def test_alert_reaches_slack_pagerduty_and_email(
    api: Api, receiver: Receiver, mailbox: Mailbox
) -> None:
    key = await api.key()
    slack = await _hook(api, key, url=receiver.url + "/slack", format="SLACK")
    pd = await _hook(
        api, key, url=receiver.url + "/pd", format="PAGERDUTY", routingKey="R0UT1NGKEY42"
    )
    mail = await _hook(api, key, url="mailto:ops@corp.example, fin@corp.example", format="EMAIL")
    assert (slack["secret"], pd["secret"], mail["secret"]) == (None, None, None)
    assert mail["webhook"]["url"] == "mailto:ops@corp.example,fin@corp.example"
    assert [h["webhook"]["format"] for h in (slack, pd, mail)] == ["SLACK", "PAGERDUTY", "EMAIL"]
    ids = [h["webhook"]["id"] for h in (slack, pd, mail)]
    rule_input = {
        "name": "any traffic",
        "metric": "REQUESTS",
        "windowMinutes": 5,
        "operator": "GT",
        "threshold": 0,
        "cooldownMinutes": 0,
        "webhookIds": ids,
    }
    rule = (await api.data(key, CREATE_RULE, {"i": rule_input}))["createAlertRule"]
    assert rule["userErrors"] == []
    assert (await api.ingest(key, [llm("x", timestamp=iso(BASE - timedelta(minutes=1)))]))[
        "accepted"
    ] == 1
    assert api.services.live is not None
    await api.services.live.alerts.evaluate_all(BASE)
    got = await receiver.wait_for(2)
    (mail_to, fired_mail), *_ = await mailbox.wait_for(1)

    by_path = {r.path: r for r in got}
    text = orjson.loads(by_path["/hook/slack"].body)["text"]
    assert text.startswith("[tallyql] Alert firing: any traffic (REQUESTS GT 0; value 1)")
    trigger = orjson.loads(by_path["/hook/pd"].body)
    assert trigger["routing_key"] == "R0UT1NGKEY42"
    assert trigger["event_action"] == "trigger"
    assert trigger["payload"]["severity"] == "critical"
    assert trigger["payload"]["source"] == "tallyql"
    assert trigger["payload"]["custom_details"]["ruleName"] == "any traffic"
    dedup = trigger["dedup_key"]
    firing_id = trigger["payload"]["custom_details"]["firingId"]
    assert dedup.endswith(f"-alert-{firing_id}")
    assert sorted(mail_to) == ["fin@corp.example", "ops@corp.example"]
    assert fired_mail["From"] == "alerts@tallyql.example"
    assert fired_mail["To"] == "ops@corp.example, fin@corp.example"
    assert fired_mail["Subject"] == text.splitlines()[0]
    assert fired_mail["X-Tallyql-Delivery"]
    assert "ruleName: any traffic" in fired_mail.get_payload(decode=True).decode()

    # the event leaves the window: the alert resolves on every channel
    await api.services.live.alerts.evaluate_all(BASE + timedelta(minutes=10))
    got = await receiver.wait_for(4)
    later = [r for r in got[2:]]
    resolved = {r.path: orjson.loads(r.body) for r in later}
    assert resolved["/hook/slack"]["text"].startswith("[tallyql] Alert resolved: any traffic")
    assert resolved["/hook/pd"] == {
        "routing_key": "R0UT1NGKEY42",
        "event_action": "resolve",
        "dedup_key": dedup,
    }
    mails = await mailbox.wait_for(2)
    assert mails[1][1]["Subject"].startswith("[tallyql] Alert resolved: any traffic")
    want = [("alert.firing", "SUCCEEDED"), ("alert.resolved", "SUCCEEDED")]
    for hook_id in ids:  # the dispatcher records an attempt just after the receiver has it
        deadline = time.monotonic() + 15
        while True:
            page = (await api.data(key, DELIVERIES, {"w": hook_id}))["webhookDeliveries"]
            seen = sorted((n["eventType"], n["status"]) for n in page["nodes"])
            if seen == want or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert seen == want


async def test_refused_mail_is_retried_and_logged(api: Api, mailbox: Mailbox) -> None:
    key = await api.key()
    hook = await _hook(api, key, url=f"mailto:{REFUSED}", format="EMAIL")
    rule_input = {
        "name": "r",
        "metric": "REQUESTS",
        "windowMinutes": 5,
        "operator": "GT",
        "threshold": 0,
        "webhookIds": [hook["webhook"]["id"]],
    }
    await api.data(key, CREATE_RULE, {"i": rule_input})
    await api.ingest(key, [llm("x", timestamp=iso(BASE - timedelta(minutes=1)))])
    assert api.services.live is not None
    await api.services.live.alerts.evaluate_all(BASE)
    deadline = time.monotonic() + 20
    while True:
        (node,) = (await api.data(key, DELIVERIES, {"w": hook["webhook"]["id"]}))[
            "webhookDeliveries"
        ]["nodes"]
        if node["attempts"] >= 2 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert node["attempts"] >= 2 and node["status"] in ("PENDING", "SENDING", "FAILED")
    assert node["lastError"] == "the SMTP server refused the recipients"
    assert mailbox.mails == []


async def test_channels_are_checked_when_created(api: Api) -> None:
    key = await api.key()

    async def errors(**fields: Any) -> list[dict[str, str]]:
        payload = (await api.data(key, CREATE_HOOK, {"i": fields}))["createWebhook"]
        assert payload["webhook"] is None
        return payload["userErrors"]

    (e,) = await errors(url="https://events.pagerduty.com/v2/enqueue", format="PAGERDUTY")
    assert e["field"] == "routingKey"
    (e,) = await errors(url="https://x.example/hook", routingKey="abc")
    assert e == {"field": "routingKey", "message": "only a PAGERDUTY webhook takes a routing key"}
    (e,) = await errors(url="https://x.example/hook", format="EMAIL")
    assert e["field"] == "url" and "mailto:" in e["message"]
    (e,) = await errors(url="mailto:not an address", format="EMAIL")
    assert e["field"] == "url"
    (e,) = await errors(
        url="mailto:" + ",".join(f"u{i}@x.example" for i in range(51)), format="EMAIL"
    )
    assert e["field"] == "url"
    (e,) = await errors(url="ftp://x.example/", format="SLACK")
    assert e["field"] == "url"
    api.services.__dict__["mailer"] = Mailer(None, "x@y.example", 1.0)  # no TALLYQL_SMTP_URL
    (e,) = await errors(url="mailto:ops@corp.example", format="EMAIL")
    assert e["field"] == "format" and "TALLYQL_SMTP_URL" in e["message"]


def test_smtp_urls() -> None:
    plain = SmtpServer.parse("smtp://mailer%40corp:p%2Fss@mail.corp.example")
    assert (plain.host, plain.port, plain.implicit_tls, plain.starttls) == (
        "mail.corp.example",
        587,
        False,
        None,
    )
    assert (plain.username, plain.password) == ("mailer@corp", "p/ss")
    tls = SmtpServer.parse("smtps://mail.corp.example")
    assert (tls.port, tls.implicit_tls, tls.username) == (465, True, None)
    assert SmtpServer.parse("smtp://h:2525?starttls=require").starttls is True
    assert SmtpServer.parse("smtp://h:25?starttls=off").starttls is False
    for bad in ("http://h", "smtp://", "smtp://h?starttls=maybe"):
        with pytest.raises(ValueError):
            SmtpServer.parse(bad)
    with pytest.raises(ValueError, match="TALLYQL_SMTP_URL"):
        load_settings({"TALLYQL_SMTP_URL": "mail.corp.example"})


def test_budget_warning_formats() -> None:
    envelope = {
        "id": "d1",
        "type": "budget.limit_warning",
        "createdAt": "2026-12-06T10:00:00Z",
        "workspaceId": 7,
        "data": {
            "budgetId": "b1",
            "budgetName": "team",
            "threshold": 0.8,
            "percentUsed": 0.8123,
            "spendUsd": 81.23,
            "limitUsd": 100.0,
            "period": "MONTH",
            "periodStart": "2026-12-01T00:00:00+00:00",
        },
    }
    line = summary(envelope["type"], envelope["data"])
    assert line == "[tallyql] Budget team at 81.2 % of its monthly limit ($81.23 of $100)"
    event = orjson.loads(pagerduty(envelope, "KEY").body)
    assert event["event_action"] == "trigger"
    assert event["dedup_key"] == "tallyql-7-budget-b1-2026-12-01T00:00:00+00:00-0.8"
    assert event["payload"]["severity"] == "warning"
    assert event["payload"]["summary"] == line
