"""Webhook endpoints and their delivery log: `webhooks`, `webhookDeliveries` and
`createWebhook`, `deleteWebhook` (MANAGE). Deliveries go out in the webhook's format
(tallyql/webhooks/formats.py); signed ones carry an HMAC (tallyql/webhooks/signing.py)."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated, Any

import orjson
import strawberry

from tallyql.auth.principal import Permission
from tallyql.mail.smtp import MAX_RECIPIENTS
from tallyql.schema.base.common import AfterArg, FirstArg, IdArg
from tallyql.schema.base.context import TallyInfo
from tallyql.schema.base.crud import DeletePayload, actor_of, deleted, saved
from tallyql.schema.base.errors import UserError
from tallyql.schema.base.pages import Connection, row_connection
from tallyql.schema.base.scalars import JSON
from tallyql.webhooks import formats, store


@strawberry.enum(description="Where a delivery stands.")
class DeliveryStatus(Enum):
    _value_: str  # what strawberry.enum_value(...) holds; the checker sees only the wrapper
    PENDING = strawberry.enum_value("pending", description="Waiting for its next attempt.")
    SENDING = strawberry.enum_value("sending", description="An attempt is in flight.")
    SUCCEEDED = strawberry.enum_value("succeeded", description="A 2xx answer was received.")
    FAILED = strawberry.enum_value("failed", description="Every attempt failed; no more retries.")


@strawberry.enum(description="What a webhook sends, and where.")
class WebhookFormat(Enum):
    _value_: str  # what strawberry.enum_value(...) holds; the checker sees only the wrapper
    SIGNED = strawberry.enum_value(
        "signed",
        description="tallyql's JSON envelope POSTed to the URL, HMAC-signed with the "
        "webhook's secret (README, webhook deliveries).",
    )
    SLACK = strawberry.enum_value(
        "slack",
        description='A message `{"text": ...}` POSTed to a Slack or Mattermost incoming '
        "webhook URL.",
    )
    PAGERDUTY = strawberry.enum_value(
        "pagerduty",
        description="A PagerDuty Events API v2 event (url: "
        f"{formats.PAGERDUTY_EVENTS_URL}, with the integration's routingKey): trigger when "
        "an alert fires or a budget threshold is crossed, resolve when the alert resolves "
        "(same dedup key).",
    )
    EMAIL = strawberry.enum_value(
        "email",
        description="A plain-text email to the recipients of a mailto: URL "
        "(mailto:a@example.org,b@example.org), through TALLYQL_SMTP_URL.",
    )


@strawberry.type(
    description="A notification channel: a signed HTTP endpoint, a Slack-compatible incoming "
    "webhook, a PagerDuty integration or email recipients. Budgets and alert rules notify "
    "the channels they name."
)
class Webhook:
    id: strawberry.ID = strawberry.field(description="The webhook's id.")
    url: str = strawberry.field(
        description="Where deliveries go: an http(s) URL, or mailto: recipients for EMAIL."
    )
    format: WebhookFormat = strawberry.field(description="What is sent (see WebhookFormat).")
    description: str | None = strawberry.field(description="A note for people.")
    created_at: datetime = strawberry.field(description="When the webhook was created.")

    @classmethod
    def of(cls, row: dict[str, Any]) -> Webhook:
        return cls(
            id=strawberry.ID(row["id"]),
            url=row["url"],
            format=WebhookFormat(row["format"]),
            description=row["description"],
            created_at=row["created_at"],
        )


@strawberry.type(description="One attempt to deliver.")
class DeliveryAttempt:
    at: datetime = strawberry.field(description="When the attempt started.")
    status_code: int | None = strawberry.field(
        description="The HTTP status answered; null when none came."
    )
    error: str | None = strawberry.field(description="What went wrong; null on success.")
    duration_ms: float = strawberry.field(description="How long the attempt took, in ms.")


@strawberry.type(description="One notification to one webhook, with every attempt.")
class WebhookDelivery:
    id: strawberry.ID = strawberry.field(
        description="The delivery's id (the X-Tallyql-Delivery header)."
    )
    webhook_id: strawberry.ID = strawberry.field(description="The webhook it goes to.")
    url: str = strawberry.field(description="The URL it goes to.")
    event_type: str = strawberry.field(
        description="budget.limit_warning, alert.firing or alert.resolved."
    )
    payload: JSON = strawberry.field(description="The JSON body that is sent.")
    status: DeliveryStatus = strawberry.field(description="Where it stands.")
    attempts: int = strawberry.field(description="Attempts made so far (count).")
    next_attempt_at: datetime | None = strawberry.field(description="While pending.")
    last_status_code: int | None = strawberry.field(description="The last attempt's HTTP status.")
    last_error: str | None = strawberry.field(description="The last attempt's error.")
    attempt_log: list[DeliveryAttempt] = strawberry.field(
        description="Every attempt, oldest first."
    )
    created_at: datetime = strawberry.field(description="When the delivery was created.")
    delivered_at: datetime | None = strawberry.field(
        description="When it succeeded; null until then."
    )

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


@strawberry.input(description="A new webhook (notification channel).")
class WebhookInput:
    url: str = strawberry.field(
        description="An http(s) URL to POST to; for EMAIL, mailto: and 1 to "
        f"{MAX_RECIPIENTS} comma-separated addresses."
    )
    description: str | None = strawberry.field(default=None, description="A note for people.")
    format: WebhookFormat = strawberry.field(
        default=WebhookFormat.SIGNED, description="What is sent (default SIGNED)."
    )
    routing_key: str | None = strawberry.field(
        default=None,
        description="PAGERDUTY only: the Events API v2 integration's routing key (never shown "
        "again).",
    )


@strawberry.type(description="The result of createWebhook.")
class CreateWebhookPayload:
    webhook: Webhook | None = strawberry.field(description="The webhook as stored; null on errors.")
    secret: str | None = strawberry.field(
        description="The signing secret (SIGNED webhooks only; null for other formats); "
        "shown only here, keep it safe."
    )
    user_errors: list[UserError] = strawberry.field(
        description="What was wrong with the input; empty on success."
    )


@strawberry.type
class WebhookQuery:
    @strawberry.field(description="The workspace's webhook endpoints, oldest first.")
    async def webhooks(
        self, info: TallyInfo, first: FirstArg = 50, after: AfterArg = None
    ) -> Connection[Webhook]:
        principal = info.context.require(Permission.MANAGE)
        db = info.context.services.db
        page = await store.list_webhooks(db, principal.workspace_id, first, after)
        return row_connection(page, after, Webhook.of)

    @strawberry.field(description="The delivery log, newest first.")
    async def webhook_deliveries(
        self,
        info: TallyInfo,
        webhook_id: Annotated[
            strawberry.ID | None,
            strawberry.argument(description="Only this webhook's deliveries; null: all."),
        ] = None,
        status: Annotated[
            DeliveryStatus | None,
            strawberry.argument(description="Only deliveries in this state; null: all."),
        ] = None,
        first: FirstArg = 50,
        after: AfterArg = None,
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
        return row_connection(page, after, WebhookDelivery.of)


@strawberry.type
class WebhookMutation:
    @strawberry.mutation(description="Add a webhook endpoint; returns its signing secret once.")
    async def create_webhook(
        self,
        info: TallyInfo,
        input: Annotated[
            WebhookInput,
            strawberry.argument(description="The new webhook."),
        ],
    ) -> CreateWebhookPayload:
        principal = info.context.require(Permission.MANAGE)
        services = info.context.services
        fields = store.WebhookFields(
            url=input.url,
            description=input.description,
            format=formats.WebhookFormat(input.format.value),
            routing_key=input.routing_key,
        )
        created, errors = await saved(
            "webhook",
            store.create_webhook(
                services.db,
                principal.workspace_id,
                fields,
                actor_of(info, principal),
                allow_private=services.settings.webhook_allow_private,
                mail_configured=services.mailer.configured,
            ),
        )
        if created is None:
            return CreateWebhookPayload(webhook=None, secret=None, user_errors=errors)
        row, secret = created
        return CreateWebhookPayload(webhook=Webhook.of(row), secret=secret, user_errors=[])

    @strawberry.mutation(description="Remove a webhook endpoint (pending deliveries fail).")
    async def delete_webhook(self, info: TallyInfo, id: IdArg) -> DeletePayload:
        principal = info.context.require(Permission.MANAGE)
        db = info.context.services.db
        actor = actor_of(info, principal)
        return await deleted(
            "webhook", id, store.delete_webhook(db, principal.workspace_id, str(id), actor)
        )
