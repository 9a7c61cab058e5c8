"""Provider accounts: a workspace's OpenRouter connection (`providerConnection`,
`connectProvider`, `disconnectProvider`, `syncProviderActivity`) and what OpenRouter says of
the account (`providerCredits`, `providerKey`)."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated, Any

import strawberry

from tallyql.auth.principal import Permission
from tallyql.imports import sync
from tallyql.imports.openrouter_client import OpenRouterClient
from tallyql.schema.base.context import TallyInfo
from tallyql.schema.base.crud import actor_of, invalid, not_found
from tallyql.schema.base.errors import UserError
from tallyql.schema.base.scalars import JSON

MAX_KEY = 512


@strawberry.enum(description="A provider whose account tallyql can read.")
class Provider(Enum):
    _value_: str  # what strawberry.enum_value(...) holds; the checker sees only the wrapper
    OPENROUTER = strawberry.enum_value(
        "openrouter", description="OpenRouter (activity, credits and key usage)."
    )


ProviderArg = Annotated[Provider, strawberry.argument(description="The provider (OPENROUTER).")]


@strawberry.type(
    description="A workspace's connection to a provider account; its key is never shown."
)
class ProviderConnection:
    provider: Provider = strawberry.field(description="The provider.")
    created_at: datetime = strawberry.field(description="When the key was set.")
    last_sync_at: datetime | None = strawberry.field(
        description="When activity was last read (daily, or by syncProviderActivity)."
    )
    last_sync_status: str | None = strawberry.field(
        description="succeeded or failed; null before the first sync."
    )
    last_error: str | None = strawberry.field(description="Why the last sync failed.")
    last_result: JSON | None = strawberry.field(
        description="The last import's counts (rows, importedRows, accepted, duplicates, "
        "skippedGatewayRequests, rejected), as POST /v1/import/openrouter answers."
    )

    @classmethod
    def of(cls, row: dict[str, Any]) -> ProviderConnection:
        return cls(
            provider=Provider(row["provider"]),
            created_at=row["created_at"],
            last_sync_at=row["last_sync_at"],
            last_sync_status=row["last_sync_status"],
            last_error=row["last_error"],
            last_result=row["last_result"],
        )


@strawberry.type(description="The account's credits, as the provider reports them now.")
class ProviderCredits:
    total_credits_usd: float = strawberry.field(description="Credits bought, in USD.")
    total_usage_usd: float = strawberry.field(description="Credits used, in USD.")
    remaining_usd: float = strawberry.field(description="Credits left, in USD.")


@strawberry.type(description="The connected key's own usage and limit, as the provider reports.")
class ProviderKey:
    label: str | None = strawberry.field(description="The key's label.")
    usage_usd: float = strawberry.field(description="What the key has spent, in USD.")
    limit_usd: float | None = strawberry.field(description="Its spending limit; null: none.")
    limit_remaining_usd: float | None = strawberry.field(
        description="What it may still spend, in USD; null without a limit."
    )
    is_free_tier: bool = strawberry.field(description="Whether the account is on the free tier.")


@strawberry.type(description="The result of a provider mutation.")
class ProviderPayload:
    connection: ProviderConnection | None = strawberry.field(
        description="The connection as stored; null on errors or after disconnecting."
    )
    user_errors: list[UserError] = strawberry.field(
        description="What was wrong with the input; empty on success."
    )


async def _client(info: TallyInfo, provider: Provider) -> OpenRouterClient | None:
    principal = info.context.require(Permission.READ)
    services = info.context.services
    found = await sync.connection(services.db, principal.workspace_id, provider.value)
    if found is None:
        return None
    return OpenRouterClient(services.settings.openrouter_base_url, found["api_key"])


@strawberry.type
class ProviderQuery:
    @strawberry.field(description="The workspace's connection to a provider; null when none.")
    async def provider_connection(
        self, info: TallyInfo, provider: ProviderArg = Provider.OPENROUTER
    ) -> ProviderConnection | None:
        principal = info.context.require(Permission.READ)
        found = await sync.connection(
            info.context.services.db, principal.workspace_id, provider.value
        )
        return ProviderConnection.of(found) if found else None

    @strawberry.field(
        description="The connected account's credits, read from the provider now; null "
        "without a connection (PROVIDER_UNAVAILABLE when the provider cannot be read)."
    )
    async def provider_credits(
        self, info: TallyInfo, provider: ProviderArg = Provider.OPENROUTER
    ) -> ProviderCredits | None:
        client = await _client(info, provider)
        if client is None:
            return None
        c = await client.credits()
        return ProviderCredits(
            total_credits_usd=c.total_credits_usd,
            total_usage_usd=c.total_usage_usd,
            remaining_usd=c.total_credits_usd - c.total_usage_usd,
        )

    @strawberry.field(
        description="The connected key's usage and limit, read from the provider now; null "
        "without a connection."
    )
    async def provider_key(
        self, info: TallyInfo, provider: ProviderArg = Provider.OPENROUTER
    ) -> ProviderKey | None:
        client = await _client(info, provider)
        if client is None:
            return None
        k = await client.key()
        return ProviderKey(
            label=k.label,
            usage_usd=k.usage_usd,
            limit_usd=k.limit_usd,
            limit_remaining_usd=k.limit_remaining_usd,
            is_free_tier=k.is_free_tier,
        )


@strawberry.type
class ProviderMutation:
    @strawberry.mutation(
        description="Connect the workspace to a provider account with a key that may read its "
        "activity (OpenRouter: a management key); its activity is then imported daily."
    )
    async def connect_provider(
        self,
        info: TallyInfo,
        api_key: Annotated[str, strawberry.argument(description="The key; never shown again.")],
        provider: ProviderArg = Provider.OPENROUTER,
    ) -> ProviderPayload:
        principal = info.context.require(Permission.ADMIN)
        key = api_key.strip()
        if not key or len(key) > MAX_KEY or not key.isprintable() or " " in key:
            return ProviderPayload(connection=None, user_errors=invalid("apiKey", "not a key"))
        db = info.context.services.db
        actor = actor_of(info, principal)
        await sync.connect(db, principal.workspace_id, provider.value, key, actor)
        found = await sync.connection(db, principal.workspace_id, provider.value)
        assert found is not None
        return ProviderPayload(connection=ProviderConnection.of(found), user_errors=[])

    @strawberry.mutation(description="Forget the provider key (imported events stay).")
    async def disconnect_provider(
        self, info: TallyInfo, provider: ProviderArg = Provider.OPENROUTER
    ) -> ProviderPayload:
        principal = info.context.require(Permission.ADMIN)
        db = info.context.services.db
        actor = actor_of(info, principal)
        if not await sync.disconnect(db, principal.workspace_id, provider.value, actor):
            return ProviderPayload(connection=None, user_errors=not_found("provider connection"))
        return ProviderPayload(connection=None, user_errors=[])

    @strawberry.mutation(
        description="Read and import the provider's activity now (the last 30 completed days; "
        "idempotent)."
    )
    async def sync_provider_activity(
        self, info: TallyInfo, provider: ProviderArg = Provider.OPENROUTER
    ) -> ProviderPayload:
        principal = info.context.require(Permission.ADMIN)
        services = info.context.services
        assert services.provider_sync is not None
        if await services.provider_sync.sync(principal.workspace_id, provider.value) is None:
            found = await sync.connection(services.db, principal.workspace_id, provider.value)
            if found is None:
                return ProviderPayload(
                    connection=None, user_errors=not_found("provider connection")
                )
            message = "a sync of this connection is running"
            return ProviderPayload(
                connection=ProviderConnection.of(found), user_errors=invalid("provider", message)
            )
        found = await sync.connection(services.db, principal.workspace_id, provider.value)
        assert found is not None
        return ProviderPayload(connection=ProviderConnection.of(found), user_errors=[])
