"""What a delivery looks like on each kind of channel.

Every notification is first written as tallyql's own envelope (`{"id", "type", "createdAt",
"workspaceId", "data"}`, webhooks/store.py); the channel's format decides what is sent:
- `signed`: the envelope itself, HMAC-signed (webhooks/signing.py);
- `slack`: `{"text": ...}`, the message Slack and Mattermost incoming webhooks accept;
- `pagerduty`: an Events API v2 event: `trigger` when an alert fires or a budget threshold is
  crossed, `resolve` when the alert resolves, with a dedup key that ties the two together;
- `email`: a plain-text message to the channel's recipients (`mailto:a@x.org,b@y.org`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import unquote

import orjson

from tallyql.mail.smtp import MAX_RECIPIENTS, valid_address
from tallyql.webhooks.addresses import WebhookError

PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
MAX_ROUTING_KEY = 64
PERIOD_WORDS = {"DAY": "daily", "WEEK": "weekly", "MONTH": "monthly"}


class WebhookFormat(StrEnum):
    SIGNED = "signed"
    SLACK = "slack"
    PAGERDUTY = "pagerduty"
    EMAIL = "email"


def recipients(url: str) -> list[str]:
    """The addresses of a `mailto:` channel; WebhookError when there are none, too many, or
    one is not a bare address."""
    if not url.lower().startswith("mailto:"):
        raise WebhookError("an email channel's url is mailto:address[,address...]")
    found = [unquote(a).strip() for a in url[len("mailto:") :].split(",") if a.strip()]
    if not 1 <= len(found) <= MAX_RECIPIENTS:
        raise WebhookError(f"give 1 to {MAX_RECIPIENTS} recipients")
    for address in found:
        if not valid_address(address):
            raise WebhookError(f"{address!r} is not an email address")
    return found


def check_routing_key(key: str | None) -> str:
    if not key or len(key) > MAX_ROUTING_KEY or not key.isascii() or not key.isalnum():
        raise WebhookError(
            "a PagerDuty channel needs its integration's routing key (letters and digits)",
            field="routingKey",
        )
    return key


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.4f}".rstrip("0").rstrip(".")
    return str(value)


def summary(event_type: str, data: dict[str, Any]) -> str:
    """One line a person reads first (a Slack message, an email subject, a PagerDuty
    summary)."""
    if event_type in ("alert.firing", "alert.resolved"):
        state = "firing" if event_type == "alert.firing" else "resolved"
        watched = data.get("health") or data.get("metric")  # a health rule has no metric
        condition = f"{watched} {data.get('operator')} {_number(data.get('threshold'))}"
        value = data.get("value")
        shown = "no value" if value is None else _number(value)
        return f"[tallyql] Alert {state}: {data.get('ruleName')} ({condition}; value {shown})"
    if event_type == "budget.limit_warning":
        percent = round(float(data.get("percentUsed") or 0) * 100, 1)
        return (
            f"[tallyql] Budget {data.get('budgetName')} at {_number(percent)} % of its "
            f"{PERIOD_WORDS.get(str(data.get('period')), 'budget')} limit "
            f"(${_number(data.get('spendUsd'))} of ${_number(data.get('limitUsd'))})"
        )
    if event_type == "report.completed":
        files = ", ".join(f["filename"] for f in data.get("files") or []) or "no files"
        outcome = "failed" if data.get("status") == "failed" else "ready"
        return f"[tallyql] Report {data.get('reportName')} {outcome}: {files}"
    return f"[tallyql] {event_type}"


def details(data: dict[str, Any]) -> str:
    return "\n".join(f"{k}: {_number(v) if v is not None else '-'}" for k, v in data.items())


@dataclass(frozen=True)
class Rendered:
    body: bytes
    headers: dict[str, str]


def slack(envelope: dict[str, Any]) -> Rendered:
    text = summary(envelope["type"], envelope["data"]) + "\n```\n" + details(envelope["data"])
    body = orjson.dumps({"text": text + "\n```"})
    return Rendered(body, {"Content-Type": "application/json"})


def pagerduty_dedup_key(envelope: dict[str, Any]) -> str:
    """The same key for an alert's firing and its resolution; one per budget threshold
    crossing (a budget threshold is announced once per period)."""
    data, workspace = envelope["data"], envelope["workspaceId"]
    if envelope["type"].startswith("alert."):
        return f"tallyql-{workspace}-alert-{data.get('firingId')}"
    if envelope["type"] == "budget.limit_warning":
        return (
            f"tallyql-{workspace}-budget-{data.get('budgetId')}-"
            f"{data.get('periodStart')}-{data.get('threshold')}"
        )
    return f"tallyql-{workspace}-{envelope['id']}"


def pagerduty(envelope: dict[str, Any], routing_key: str) -> Rendered:
    kind = envelope["type"]
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "resolve" if kind == "alert.resolved" else "trigger",
        "dedup_key": pagerduty_dedup_key(envelope),
    }
    if kind != "alert.resolved":
        event["payload"] = {
            "summary": summary(kind, envelope["data"])[:1024],
            "source": "tallyql",
            "severity": "critical" if kind == "alert.firing" else "warning",
            "timestamp": envelope["createdAt"],
            "component": f"workspace {envelope['workspaceId']}",
            "class": kind,
            "custom_details": envelope["data"],
        }
    return Rendered(orjson.dumps(event), {"Content-Type": "application/json"})


def email_text(envelope: dict[str, Any]) -> tuple[str, str]:
    """(subject, body) of a notification email."""
    subject = summary(envelope["type"], envelope["data"])
    body = (
        f"{subject}\n\n{details(envelope['data'])}\n\n"
        f"Notification {envelope['id']} ({envelope['type']}) of workspace "
        f"{envelope['workspaceId']}, {envelope['createdAt']}.\n"
    )
    return subject, body
