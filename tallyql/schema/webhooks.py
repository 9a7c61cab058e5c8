"""Webhook endpoints and their delivery log: `webhooks`, `webhookDeliveries` and
`createWebhook`, `deleteWebhook` (MANAGE). Deliveries are signed (tallyql/webhooks/signing.py)."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

import orjson
import strawberry
from sqlalchemy.ext.asyncio import AsyncConnection

from tallyql.auth.principal import Permission
from tallyql.schema.changes import DeletePayload, actor_of, invalid, not_found
from tallyql.schema.context import TallyInfo
from tallyql.schema.ingest import UserError
from tallyql.schema.pages import Connection, connection
from tallyql.schema.scalars import JSON
from tallyql.storage.actor import Actor, audit_change
from tallyql.webhooks import store
from tallyql.webhooks.addresses import WebhookError


@strawberry.enum(description="Where a delivery stands.")
class DeliveryStatus(Enum):
    PENDING = "pending"
    SENDING = "sending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@strawberry.type(description="An HTTP endpoint that receives signed JSON POSTs.")
class Webhook:
    id: strawberry.ID
    url: str
    description: str | None
    created_at: datetime

    @classmethod
    def of(cls, row: dict[str, Any]) -> Webhook:
        return cls(
            id=strawberry.ID(row["id"]),
            url=row["url"],
            description=row["description"],
            created_at=row["created_at"],
        )


@strawberry.type(description="One attempt to deliver.")
class DeliveryAttempt:
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: float


@strawberry.type(description="One notification to one webhook, with every attempt.")
class WebhookDelivery:
    id: strawberry.ID
    webhook_id: strawberry.ID
    url: str
    event_type: str = strawberry.field(
        description="budget.limit_warning, alert.firing or alert.resolved."
    )
    payload: JSON = strawberry.field(description="The JSON body that is sent.")
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None = strawberry.field(description="While pending.")
    last_status_code: int | None
    last_error: str | None
    attempt_log: list[DeliveryAttempt]
    created_at: datetime
    delivered_at: datetime | None

    @classmethod
    def of(cls, row: dict[str, Any]) -> WebhookDelivery:
        status = DeliveryStatus(row["status"])
        return cls(
            id=strawberry.ID(row["id"]),
            webhook_id=strawberry.ID(row["webhook_id"]),
            url=row["url"],
            event_type=row["event_type"],
            payload=orjson.loads(row["body"]),
            status=status,
            attempts=row["attempts"],
            next_attempt_at=row["next_attempt_at"] if status is DeliveryStatus.PENDING else None,
            last_status_code=row["last_status_code"],
            last_error=row["last_error"],
            attempt_log=[
                DeliveryAttempt(
                    at=datetime.fromisoformat(a["at"]),
                    status_code=a["statusCode"],
                    error=a["error"],
                    duration_ms=a["durationMs"],
                )
                for a in row["attempt_log"]
            ],
            created_at=row["created_at"],
            delivered_at=row["delivered_at"],
        )


@strawberry.input(description="A new webhook endpoint.")
class WebhookInput:
    url: str
    description: str | None = None


@strawberry.type
class CreateWebhookPayload:
    webhook: Webhook | None
    secret: str | None = strawberry.field(
        description="The signing secret; shown only here, keep it safe."
    )
    user_errors: list[UserError]


@strawberry.type
class WebhookQuery:
    @strawberry.field(description="The workspace's webhook endpoints, oldest first.")
    async def webhooks(
        self, info: TallyInfo, first: int = 50, after: str | None = None
    ) -> Connection[Webhook]:
        principal = info.context.require(Permission.MANAGE)
        db = info.context.services.db
        page = await store.list_webhooks(db, principal.workspace_id, first, after)
        nodes = [Webhook.of(r) for r in page.rows]
        return connection(nodes, page.cursors, page.total_count, page.has_next_page, after)

    @strawberry.field(description="The delivery log, newest first.")
    async def webhook_deliveries(
        self,
        info: TallyInfo,
        webhook_id: strawberry.ID | None = None,
        status: DeliveryStatus | None = None,
        first: int = 50,
        after: str | None = None,
    ) -> Connection[WebhookDelivery]:
        principal = info.context.require(Permission.MANAGE)
        page = await store.list_deliveries(
            info.context.services.db,
            principal.workspace_id,
            str(webhook_id) if webhook_id is not None else None,
            status.value if status is not None else None,
            first,
            after,
        )
        nodes = [WebhookDelivery.of(r) for r in page.rows]
        return connection(nodes, page.cursors, page.total_count, page.has_next_page, after)


async def _audit(
    conn: AsyncConnection, workspace_id: int, action: str, row: dict[str, Any], actor: Actor
) -> None:
    details = {"url": row["url"], "description": row["description"]}
    await audit_change(conn, workspace_id, action, "webhook", row["id"], actor, details)


@strawberry.type
class WebhookMutation:
    @strawberry.mutation(description="Add a webhook endpoint; returns its signing secret once.")
    async def create_webhook(self, info: TallyInfo, input: WebhookInput) -> CreateWebhookPayload:
        principal = info.context.require(Permission.MANAGE)
        try:
            async with info.context.services.db.write() as conn:
                row, secret = await store.create_webhook(
                    conn,
                    principal.workspace_id,
                    input.url,
                    input.description,
                    allow_private=info.context.services.settings.webhook_allow_private,
                )
                await _audit(conn, principal.workspace_id, "create", row, actor_of(info, principal))
        except WebhookError as exc:
            return CreateWebhookPayload(
                webhook=None, secret=None, user_errors=invalid("url", str(exc))
            )
        return CreateWebhookPayload(webhook=Webhook.of(row), secret=secret, user_errors=[])

    @strawberry.mutation(description="Remove a webhook endpoint (pending deliveries fail).")
    async def delete_webhook(self, info: TallyInfo, id: strawberry.ID) -> DeletePayload:
        principal = info.context.require(Permission.MANAGE)
        async with info.context.services.db.write() as conn:
            row = await store.delete_webhook(conn, principal.workspace_id, str(id))
            if row is not None:
                await _audit(conn, principal.workspace_id, "delete", row, actor_of(info, principal))
        if row is None:
            return DeletePayload(deleted_id=None, user_errors=not_found("webhook"))
        return DeletePayload(deleted_id=id, user_errors=[])
