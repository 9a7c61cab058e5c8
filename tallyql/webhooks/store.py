"""Webhook endpoints and the delivery log.

`enqueue` writes one pending delivery per target in the caller's transaction, so a
delivery exists exactly when the thing it reports (a threshold crossing, an alert firing)
was committed; the dispatcher sends it afterwards.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from tallyql.clock import clock
from tallyql.storage.audit import Actor, audit_change
from tallyql.storage.database import Database
from tallyql.storage.live_tables import webhook_deliveries, webhooks
from tallyql.storage.pages import Page, keyset_page
from tallyql.webhooks.addresses import WebhookError, check_url
from tallyql.webhooks.formats import WebhookFormat, check_routing_key, recipients

DELIVERY_STATUSES = ("pending", "sending", "succeeded", "failed")


@dataclass(frozen=True)
class WebhookFields:
    url: str
    description: str | None = None
    format: WebhookFormat = WebhookFormat.SIGNED
    routing_key: str | None = None


def _check_format(fields: WebhookFields, mail_configured: bool) -> None:
    """WebhookError when the format's own needs are not met (checked before the url)."""
    if fields.format is WebhookFormat.PAGERDUTY:
        check_routing_key(fields.routing_key)
    elif fields.routing_key is not None:
        raise WebhookError("only a PAGERDUTY webhook takes a routing key", field="routingKey")
    if fields.format is WebhookFormat.EMAIL and not mail_configured:
        message = "email needs an SMTP server: the operator sets TALLYQL_SMTP_URL"
        raise WebhookError(message, field="format")


async def create_webhook(
    db: Database,
    workspace_id: int,
    fields: WebhookFields,
    actor: Actor,
    *,
    allow_private: bool,
    mail_configured: bool,
) -> tuple[dict[str, Any], str | None]:
    """A new channel (audited), and for the signed format its signing secret; WebhookError
    (a FieldError) when it is described wrongly."""
    _check_format(fields, mail_configured)
    async with db.write() as conn:
        row, secret = await insert_webhook(
            conn,
            workspace_id,
            fields.url,
            fields.description,
            allow_private=allow_private,
            format=fields.format,
            routing_key=fields.routing_key,
        )
        await _audit(conn, workspace_id, "create", row, actor)
    return row, secret


async def delete_webhook(db: Database, workspace_id: int, webhook_id: str, actor: Actor) -> bool:
    """Delete an endpoint (audited; its pending deliveries then fail); False when there was
    none."""
    mine = (webhooks.c.workspace_id == workspace_id, webhooks.c.id == webhook_id)
    async with db.write() as conn:
        found = (await conn.execute(select(webhooks).where(*mine))).mappings().first()
        if found is None:
            return False
        await conn.execute(delete(webhooks).where(*mine))
        await _audit(conn, workspace_id, "delete", dict(found), actor)
    return True


async def _audit(
    conn: AsyncConnection, workspace_id: int, action: str, row: dict[str, Any], actor: Actor
) -> None:
    details = {"url": row["url"], "format": row["format"], "description": row["description"]}
    await audit_change(conn, workspace_id, action, "webhook", row["id"], actor, details)


async def insert_webhook(
    conn: AsyncConnection,
    workspace_id: int,
    url: str,
    description: str | None,
    allow_private: bool = False,
    format: WebhookFormat = WebhookFormat.SIGNED,
    routing_key: str | None = None,
) -> tuple[dict[str, Any], str | None]:
    """A new channel, and for the signed format its signing secret (shown to the caller
    once). `allow_private`: TALLYQL_WEBHOOK_ALLOW_PRIVATE (tallyql/webhooks/addresses.py).
    A PagerDuty channel keeps its routing key where others keep the secret."""
    secret: str | None = None
    if format is WebhookFormat.EMAIL:
        url = "mailto:" + ",".join(recipients(url))
        stored = "-"  # email is not signed; the column is kept non-null for the dispatcher
    elif format is WebhookFormat.PAGERDUTY:
        url = check_url(url, allow_private)
        stored = check_routing_key(routing_key)
    else:
        url = check_url(url, allow_private)
        stored = "whsec_" + secrets.token_urlsafe(32)
        secret = stored if format is WebhookFormat.SIGNED else None
    row = {
        "workspace_id": workspace_id,
        "id": uuid.uuid4().hex,
        "url": url,
        "secret": stored,
        "description": description,
        "created_at": clock.now(),
        "format": format.value,
    }
    await conn.execute(webhooks.insert().values(**row))
    return row, secret


async def existing_ids(conn: AsyncConnection, workspace_id: int, ids: Sequence[str]) -> set[str]:
    if not ids:
        return set()
    rows = await conn.execute(
        select(webhooks.c.id).where(
            webhooks.c.workspace_id == workspace_id, webhooks.c.id.in_(list(ids))
        )
    )
    return set(rows.scalars())


async def list_webhooks(db: Database, workspace_id: int, first: int, after: str | None) -> Page:
    query = select(webhooks).where(webhooks.c.workspace_id == workspace_id)
    return await keyset_page(
        db, query, webhooks.c.created_at, webhooks.c.id, "wh", first, after, newest_first=False
    )


async def enqueue(
    conn: AsyncConnection,
    workspace_id: int,
    webhook_ids: Sequence[str],
    event_type: str,
    data: dict[str, Any],
) -> list[str]:
    """One pending delivery per existing target; returns their ids."""
    if not webhook_ids:
        return []
    targets = (
        await conn.execute(
            select(webhooks.c.id, webhooks.c.url).where(
                webhooks.c.workspace_id == workspace_id, webhooks.c.id.in_(list(webhook_ids))
            )
        )
    ).all()
    now = clock.now()
    ids: list[str] = []
    for webhook_id, url in sorted(targets):
        delivery_id = uuid.uuid4().hex
        body = orjson.dumps(
            {
                "id": delivery_id,
                "type": event_type,
                "createdAt": now.isoformat().replace("+00:00", "Z"),
                "workspaceId": workspace_id,
                "data": data,
            }
        ).decode()
        await conn.execute(
            webhook_deliveries.insert().values(
                workspace_id=workspace_id,
                id=delivery_id,
                webhook_id=webhook_id,
                url=url,
                event_type=event_type,
                body=body,
                status="pending",
                attempts=0,
                next_attempt_at=now,
                attempt_log=[],
                created_at=now,
                updated_at=now,
            )
        )
        ids.append(delivery_id)
    return ids


async def list_deliveries(
    db: Database,
    workspace_id: int,
    webhook_id: str | None,
    status: str | None,
    first: int,
    after: str | None,
) -> Page:
    t = webhook_deliveries
    query = select(t).where(t.c.workspace_id == workspace_id)
    if webhook_id is not None:
        query = query.where(t.c.webhook_id == webhook_id)
    if status is not None:
        query = query.where(t.c.status == status)
    return await keyset_page(db, query, t.c.created_at, t.c.id, "whd", first, after, True)
