"""Shared by the budget, alert and webhook tests: settings whose background jobs stay quiet
(the tests trigger evaluation themselves), a real HTTP receiver on loopback for webhooks, a
capture of the live bus's notices, and a plain-Python budget reference."""

from __future__ import annotations

import asyncio
import calendar
import hashlib
import hmac
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from email import message_from_bytes, policy
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aiosmtpd.controller import Controller

from tallyql.config import Settings
from tallyql.live.subscriber import Subscriber
from tallyql.services import Services
from tests.conftest import Api
from tests.support.helpers import iso, llm
from tests.support.reference import matches


def quiet_settings(database_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    """Budget and alert loops that only run at start (tests call `evaluate` themselves),
    no retention purge, fast webhook retries."""
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "database_url": database_url,
        "key_cache_seconds": 0.0,
        "budget_interval_seconds": 3600.0,
        "budget_debounce_seconds": 3600.0,
        "alert_interval_seconds": 3600.0,
        "retention_interval_seconds": 0.0,
        "webhook_backoff_seconds": 0.1,
        "webhook_poll_seconds": 0.2,
        "webhook_timeout_seconds": 5.0,
        "webhook_allow_private": True,  # the receiver listens on loopback
        "max_event_age_days": 36_500,  # the tests' events sit at fixed dates, years back later
    }
    values.update(overrides)
    return Settings(**values)


# ---------------------------------------------------------------- SMTP server

REFUSED = "nobody@refused.example"


@dataclass
class Mailbox:
    """What the SMTP server received: (envelope recipients, parsed message) per mail."""

    port: int
    mails: list[tuple[list[str], Message]] = field(default_factory=list)

    async def wait_for(self, count: int, within: float = 15.0) -> list[tuple[list[str], Message]]:
        deadline = time.monotonic() + within
        while len(self.mails) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.mails)} mails arrived, wanted {count}")
            await asyncio.sleep(0.02)
        return list(self.mails)


class _Handler:
    def __init__(self, box: Mailbox) -> None:
        self.box = box

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address == REFUSED:
            return "550 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = message_from_bytes(envelope.content, policy=policy.default)
        self.box.mails.append((list(envelope.rcpt_tos), parsed))
        return "250 Message accepted"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def smtp_server() -> Iterator[Mailbox]:
    """A real SMTP server (aiosmtpd) on loopback; it refuses the address REFUSED."""
    box = Mailbox(_free_port())
    controller = Controller(_Handler(box), hostname="127.0.0.1", port=box.port)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


# ---------------------------------------------------------------- webhook receiver


@dataclass
class Received:
    at: float  # time.monotonic() when the request arrived
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int


@dataclass
class Receiver:
    """A real HTTP server in a thread: answers 500 to the first `fail_first` requests."""

    url: str
    fail_first: int
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def snapshot(self) -> list[Received]:
        with self.lock:
            return list(self.requests)

    async def wait_for(self, count: int, within: float = 15.0) -> list[Received]:
        deadline = time.monotonic() + within
        while len(got := self.snapshot()) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(got)} webhook requests arrived, wanted {count}")
            await asyncio.sleep(0.02)
        return got


@contextmanager
def webhook_receiver(fail_first: int = 0) -> Iterator[Receiver]:
    receiver: Receiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with receiver.lock:
                code = 500 if len(receiver.requests) < receiver.fail_first else 200
                receiver.requests.append(
                    Received(time.monotonic(), self.path, dict(self.headers.items()), body, code)
                )
            answer = b"boom" if code == 500 else b"ok"
            self.send_response(code)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver = Receiver(f"http://127.0.0.1:{server.server_address[1]}/hook", fail_first)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def check_signature(secret: str, request: Received) -> None:
    """Verify a delivery's signature independently of tallyql/webhooks/signing.py."""
    headers = {k.lower(): v for k, v in request.headers.items()}
    timestamp = headers["x-tallyql-timestamp"]
    parts = dict(p.split("=", 1) for p in headers["x-tallyql-signature"].split(","))
    assert parts["t"] == timestamp
    assert abs(int(timestamp) - time.time()) < 60
    message = timestamp.encode() + b"." + request.body
    expected = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(parts["v1"], expected), "bad webhook signature"
    forged = hmac.new(b"another secret", message, hashlib.sha256).hexdigest()
    assert parts["v1"] != forged
    assert headers["content-type"] == "application/json"


# ---------------------------------------------------------------- live bus capture


class Notices:
    """Subscribes to one workspace's notices on a Services' live bus, in process."""

    def __init__(self, services: Services, workspace_id: int, kinds: frozenset[str]) -> None:
        assert services.live is not None
        self.subscriber = Subscriber(workspace_id, lambda row: True, kinds, 1000)
        services.live.service.bus.subscribe(self.subscriber)

    def drain(self) -> list[tuple[str, Any]]:
        items = []
        while (item := self.subscriber.take()) is not None:
            items.append(item)
        return items

    async def wait_for(self, count: int, within: float = 10.0) -> list[tuple[str, Any]]:
        """Exactly the items received by the time `count` have arrived."""
        got: list[tuple[str, Any]] = []
        deadline = time.monotonic() + within
        while len(got) < count:
            got += self.drain()
            if len(got) >= count:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(got)} notices arrived, wanted {count}: {got}")
            await asyncio.sleep(0.02)
        return got


# ---------------------------------------------------------------- budget reference


def local_period(period: str, now: datetime, tz_name: str) -> tuple[datetime, datetime, int]:
    """[start, end) in UTC and the days of the DAY/WEEK/MONTH period holding `now`."""
    tz = ZoneInfo(tz_name)
    today = now.astimezone(tz).date()
    if period == "DAY":
        first, days = today, 1
    elif period == "WEEK":
        first, days = today - timedelta(days=today.weekday()), 7
    else:
        first, days = today.replace(day=1), calendar.monthrange(today.year, today.month)[1]
    last = first + timedelta(days=days)

    def midnight(day: date) -> datetime:
        return datetime.combine(day, dtime(0), tzinfo=tz).astimezone(UTC)

    return midnight(first), midnight(last), days


def budget_scope_events(
    events: list[dict[str, Any]], budget: dict[str, Any], members: dict[str, set[str]]
) -> list[dict[str, Any]]:
    scope, value = budget.get("scope", "WORKSPACE"), budget.get("scopeValue")
    column = {"USER": "user_id", "API_KEY": "api_key_id", "MODEL": "model", "PROVIDER": "provider"}
    if scope == "WORKSPACE":
        return list(events)
    if scope in column:
        return [e for e in events if e.get(column[scope]) == value]
    if scope == "GROUP":
        return [e for e in events if e.get("user_id") in members.get(value or "", set())]
    assert scope == "FILTER"
    return [e for e in events if matches(e, budget["filter"], members)]


def expected_budget(
    events: list[dict[str, Any]],
    budget: dict[str, Any],
    now: datetime,
    members: dict[str, set[str]] | None = None,
) -> dict[str, Any]:
    """What a budget shows at `now`, from normalised events (tests/support/reference.normalise)."""
    start, end, days = local_period(budget["period"], now, budget["timezone"])
    tz = ZoneInfo(budget["timezone"])
    mine = [e for e in budget_scope_events(events, budget, members or {}) if start <= e["ts"] < end]
    spend = sum(round(e.get("cost_usd", 0) * 1_000_000) * 1000 for e in mine)
    days_with_data = len({e["ts"].astimezone(tz).date() for e in mine})
    amount = round(budget["amountUsd"] * 1e9)
    projected = round(spend / days_with_data * days) if days_with_data else 0
    percent = spend * 100 / amount
    thresholds = budget.get("thresholds") or [50, 80, 100]
    if percent >= 100:
        status = "EXCEEDED"
    elif percent >= min(thresholds):
        status = "WARNING"
    elif projected > amount:
        status = "AT_RISK"
    else:
        status = "OK"
    return {
        "periodStart": start,
        "periodEnd": end,
        "daysInPeriod": days,
        "spendNano": spend,
        "daysWithData": days_with_data,
        "projectedNano": projected,
        "percentUsed": percent,
        "daysRemaining": (end - now).total_seconds() / 86400,
        "status": status,
    }


BASE = datetime(2025, 11, 19, 12, tzinfo=UTC)


CREATE_RULE = """mutation($input: AlertRuleInput!) { createAlertRule(input: $input) {
  alertRule { id } userErrors { field code } } }"""


CREATE_WEBHOOK = """mutation($input: WebhookInput!) { createWebhook(input: $input) {
  webhook { id url description } secret userErrors { field code } } }"""


DELIVERIES = """query($status: DeliveryStatus, $hook: ID) {
  webhookDeliveries(status: $status, webhookId: $hook) { totalCount nodes {
    id webhookId url eventType payload status attempts nextAttemptAt lastStatusCode lastError
    attemptLog { at statusCode error durationMs } createdAt deliveredAt } } }"""


async def alert_on_any_request(api: Api, key: str, hooks: list[str]) -> str:
    fields = {"name": "traffic", "metric": "REQUESTS", "windowMinutes": 5, "operator": "GT",
              "threshold": 0, "webhookIds": hooks}  # fmt: skip
    payload = (await api.data(key, CREATE_RULE, {"input": fields}))["createAlertRule"]
    assert payload["userErrors"] == []
    return payload["alertRule"]["id"]


async def fire(api: Api, key: str, at: datetime = BASE) -> None:
    """One request a minute before `at`, then an evaluation at `at` (the rule fires)."""
    assert (await api.ingest(key, [llm(f"e-{at:%H%M}", timestamp=iso(at - timedelta(minutes=1)))]))[
        "accepted"
    ] == 1
    assert api.services.live is not None
    await api.services.live.alerts.evaluate_all(at)


async def deliveries_when(api: Api, key: str, done: int, **variables: Any) -> list[dict[str, Any]]:
    """The delivery log once `done` deliveries have finished (succeeded or failed)."""
    for _ in range(500):
        nodes = (await api.data(key, DELIVERIES, variables))["webhookDeliveries"]["nodes"]
        if sum(n["status"] in ("SUCCEEDED", "FAILED") for n in nodes) >= done:
            return nodes
        await asyncio.sleep(0.02)
    raise AssertionError(f"deliveries did not finish: {nodes}")
