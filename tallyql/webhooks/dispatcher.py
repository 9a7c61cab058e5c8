"""Sends pending webhook deliveries, retrying failures with exponential backoff.

Every replica runs a dispatcher. A delivery is claimed with a conditional UPDATE (pending and
due, or `sending` with an expired lease after a crash), so only one replica sends each
attempt. An attempt succeeds on any 2xx answer; otherwise the next one is due after
`backoff * 2**(attempts - 1)` seconds (at most `backoff_max`), until `max_attempts`, when
the delivery is marked failed. Every attempt is appended to the delivery's log.

Requests go through `PinnedTransport` (only checked public addresses, unless
TALLYQL_WEBHOOK_ALLOW_PRIVATE) and redirects are not followed. The log keeps the status code
and a short reason of our own, never the receiver's answer: a response body, or an exception
text holding one, would let a workspace member read what an address answers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import orjson
from sqlalchemy import and_, or_, select, update

from tallyql.clock import clock
from tallyql.mail.smtp import Mailer, MailError
from tallyql.storage.database import Database
from tallyql.storage.jobs import PeriodicJob
from tallyql.storage.live_tables import webhook_deliveries, webhooks
from tallyql.webhooks import formats
from tallyql.webhooks.addresses import AddressRefused, WebhookError
from tallyql.webhooks.formats import WebhookFormat
from tallyql.webhooks.signing import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    signature_header,
)
from tallyql.webhooks.transport import PinnedTransport

log = logging.getLogger(__name__)

CLAIM_BATCH = 20
USER_AGENT = "tallyql-webhooks/1"


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    backoff_seconds: float = 5.0
    backoff_max_seconds: float = 3600.0

    def delay(self, attempts: int) -> float:
        """Seconds to wait after the `attempts`-th failed attempt."""
        return min(self.backoff_seconds * 2 ** (attempts - 1), self.backoff_max_seconds)


def failure_reason(exc: httpx.HTTPError) -> str:
    """A short reason of ours for a failed request (never the exception's text)."""
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.ConnectError):
        return "ConnectError: could not connect"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "the receiver broke the HTTP protocol"
    return f"request failed ({type(exc).__name__})"


class WebhookDispatcher(PeriodicJob):
    name = "webhooks"

    def __init__(
        self,
        db: Database,
        policy: RetryPolicy,
        timeout_seconds: float,
        poll_seconds: float,
        allow_private: bool = False,
        mailer: Mailer | None = None,
        reports: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(poll_seconds, reports)
        self._db = db
        self._mailer = mailer or Mailer(None, "tallyql@localhost", timeout_seconds)
        self._allow_private = allow_private
        self._policy = policy
        self._timeout = timeout_seconds
        self._client: httpx.AsyncClient | None = None
        self._next = poll_seconds
        self.sent = 0
        self.failed_attempts = 0

    async def work(self) -> dict[str, Any]:
        """Send the due deliveries; with none, wait for the next one to fall due (or for
        `notify()`: new deliveries are waiting)."""
        self._next = self.interval  # after a failure: the poll interval
        if self._client is None:
            self._client = httpx.AsyncClient(
                transport=PinnedTransport(self._allow_private),
                timeout=self._timeout,
                follow_redirects=False,
                trust_env=False,
            )
        claimed = await self._claim()
        client = self._client
        await asyncio.gather(*(self._attempt(client, row) for row in claimed))
        self._next = 0.0 if claimed else await self._seconds_to_next()
        return {"attempted": len(claimed)}

    def pause(self) -> float:
        return self._next

    def facts(self) -> dict[str, Any]:
        return {"sent": self.sent, "failed_attempts": self.failed_attempts}

    async def stopped(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def _seconds_to_next(self) -> float:
        """Until the next pending delivery is due (at most the poll interval)."""
        t = webhook_deliveries
        async with self._db.read() as conn:
            soonest = (
                await conn.execute(
                    select(t.c.next_attempt_at)
                    .where(t.c.status == "pending")
                    .order_by(t.c.next_attempt_at)
                    .limit(1)
                )
            ).scalar_one_or_none()
        if soonest is None:
            return self.interval
        seconds = (soonest - clock.now()).total_seconds()
        return min(self.interval, max(0.01, seconds))

    async def _claim(self) -> list[dict[str, Any]]:
        now = clock.now()
        t = webhook_deliveries
        due = or_(
            and_(t.c.status == "pending", t.c.next_attempt_at <= now),
            and_(t.c.status == "sending", t.c.lease_until < now),
        )
        async with self._db.read() as conn:
            candidates = (
                await conn.execute(
                    select(t.c.workspace_id, t.c.id)
                    .where(due)
                    .order_by(t.c.next_attempt_at)
                    .limit(CLAIM_BATCH)
                )
            ).all()
        if not candidates:
            return []
        lease = now + timedelta(seconds=self._timeout + 30)
        claimed: list[dict[str, Any]] = []
        async with self._db.write() as conn:
            for workspace_id, delivery_id in candidates:
                mine = and_(t.c.workspace_id == workspace_id, t.c.id == delivery_id)
                result = await conn.execute(
                    update(t).where(mine, due).values(status="sending", lease_until=lease)
                )
                if result.rowcount != 1:
                    continue  # another replica took it
                row = (
                    (
                        await conn.execute(
                            select(t, webhooks.c.secret, webhooks.c.format)
                            .outerjoin(
                                webhooks,
                                and_(
                                    webhooks.c.workspace_id == t.c.workspace_id,
                                    webhooks.c.id == t.c.webhook_id,
                                ),
                            )
                            .where(mine)
                        )
                    )
                    .mappings()
                    .one()
                )
                claimed.append(dict(row))
        return claimed

    async def _attempt(self, client: httpx.AsyncClient, row: dict[str, Any]) -> None:
        started = time.monotonic()
        status_code: int | None = None
        error: str | None = None
        if row["secret"] is None:
            error = "the webhook was deleted"
        elif row["format"] == WebhookFormat.EMAIL:
            error = await self._email(row)
        else:
            request = self._request(row)
            try:
                # streamed and closed unread: the body is never downloaded
                async with client.stream(
                    "POST", row["url"], content=request.body, headers=request.headers
                ) as response:
                    status_code = response.status_code
                if not 200 <= status_code < 300:
                    error = f"HTTP {status_code}" + (
                        " (redirects are not followed)" if 300 <= status_code < 400 else ""
                    )
            except AddressRefused as exc:
                error = f"refused: {exc}"
            except httpx.HTTPError as exc:
                error = failure_reason(exc)
        await self._record(row, status_code, error, time.monotonic() - started)

    def _request(self, row: dict[str, Any]) -> formats.Rendered:
        """The body and headers of an HTTP delivery, in the channel's format."""
        if row["format"] == WebhookFormat.SLACK:
            rendered = formats.slack(orjson.loads(row["body"]))
        elif row["format"] == WebhookFormat.PAGERDUTY:
            rendered = formats.pagerduty(orjson.loads(row["body"]), row["secret"])
        else:
            body = row["body"].encode()
            timestamp = int(clock.timestamp())
            rendered = formats.Rendered(
                body,
                {
                    "Content-Type": "application/json",
                    TIMESTAMP_HEADER: str(timestamp),
                    SIGNATURE_HEADER: signature_header(row["secret"], timestamp, body),
                    EVENT_HEADER: row["event_type"],
                },
            )
        # every format says which delivery it is, so a receiver can drop a retried duplicate
        headers = {**rendered.headers, "User-Agent": USER_AGENT, DELIVERY_HEADER: row["id"]}
        return formats.Rendered(rendered.body, headers)

    async def _email(self, row: dict[str, Any]) -> str | None:
        """Sends an email delivery; the error of the attempt, or None."""
        envelope = orjson.loads(row["body"])
        subject, text = formats.email_text(envelope)
        try:
            to = formats.recipients(row["url"])
            message = self._mailer.message(
                to, subject, text, headers={"X-Tallyql-Delivery": row["id"]}
            )
            await self._mailer.send(message)
        except (MailError, WebhookError) as exc:
            return str(exc)
        return None

    async def _record(
        self, row: dict[str, Any], status_code: int | None, error: str | None, elapsed: float
    ) -> None:
        now = clock.now()
        attempts = row["attempts"] + 1
        entry = {
            "at": now.isoformat().replace("+00:00", "Z"),
            "statusCode": status_code,
            "error": error,
            "durationMs": round(elapsed * 1000, 1),
        }
        values: dict[str, Any] = {
            "attempts": attempts,
            "last_status_code": status_code,
            "last_error": error,
            "attempt_log": [*row["attempt_log"], entry],
            "lease_until": None,
            "updated_at": now,
        }
        if error is None:
            values |= {"status": "succeeded", "delivered_at": now}
            self.sent += 1
        else:
            self.failed_attempts += 1
            gone = row["secret"] is None
            if gone or attempts >= self._policy.max_attempts:
                values["status"] = "failed"
            else:
                delay = timedelta(seconds=self._policy.delay(attempts))
                values |= {"status": "pending", "next_attempt_at": now + delay}
                log.info("webhook %s attempt %d failed: %s", row["id"], attempts, error)
        t = webhook_deliveries
        async with self._db.write() as conn:
            await conn.execute(
                update(t)
                .where(t.c.workspace_id == row["workspace_id"], t.c.id == row["id"])
                .values(**values)
            )
