"""Admin mutations on prices: create, change and delete overrides; reprice stored events."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

import strawberry

from tallyql.auth.principal import Permission
from tallyql.costs import store as repo
from tallyql.costs.repricing import reprice
from tallyql.costs.validation import check_override
from tallyql.money import to_usd
from tallyql.schema.base.common import FilterArg, IdArg, RangeArg, filter_spec
from tallyql.schema.base.context import TallyInfo
from tallyql.schema.base.errors import UserError
from tallyql.schema.prices import PriceOverride
from tallyql.storage.audit import Actor


@strawberry.input(description="A price override; rates are USD per million tokens.")
class PriceOverrideInput:
    model: str = strawberry.field(description="Exact model name, or a regex (modelIsRegex).")
    input_per_mtok: float = strawberry.field(description="USD per million input tokens.")
    output_per_mtok: float = strawberry.field(description="USD per million output tokens.")
    provider: str | None = strawberry.field(default=None, description="null: any provider.")
    model_is_regex: bool = strawberry.field(
        default=False, description="Match the whole model name against `model` as a regex."
    )
    effective_from: datetime | None = strawberry.field(
        default=None, description="Applies to events from this instant (inclusive); null: always."
    )
    effective_until: datetime | None = strawberry.field(
        default=None,
        description="Applies to events before this instant (exclusive); null: open-ended.",
    )
    cache_read_per_mtok: float | None = strawberry.field(
        default=None,
        description="USD per million input tokens read from cache. Null: the input rate.",
    )
    cache_write_per_mtok: float | None = strawberry.field(
        default=None,
        description="USD per million input tokens written to cache. Null: the input rate.",
    )
    reasoning_per_mtok: float | None = strawberry.field(
        default=None, description="USD per million reasoning tokens. Null: the output rate."
    )
    description: str | None = strawberry.field(default=None, description="A note for people.")


@strawberry.input(description="Fields to change; omitted fields keep their value, null clears.")
class PriceOverridePatch:
    model: str | None = strawberry.field(
        default=strawberry.UNSET, description="New model name or regex."
    )
    input_per_mtok: float | None = strawberry.field(
        default=strawberry.UNSET, description="USD per million input tokens."
    )
    output_per_mtok: float | None = strawberry.field(
        default=strawberry.UNSET, description="USD per million output tokens."
    )
    provider: str | None = strawberry.field(
        default=strawberry.UNSET, description="New provider; null: any provider."
    )
    model_is_regex: bool | None = strawberry.field(
        default=strawberry.UNSET, description="Whether `model` is a regex."
    )
    effective_from: datetime | None = strawberry.field(
        default=strawberry.UNSET, description="New start (inclusive); null: always."
    )
    effective_until: datetime | None = strawberry.field(
        default=strawberry.UNSET, description="New end (exclusive); null: open-ended."
    )
    cache_read_per_mtok: float | None = strawberry.field(
        default=strawberry.UNSET,
        description="USD per million input tokens read from cache. Null: the input rate.",
    )
    cache_write_per_mtok: float | None = strawberry.field(
        default=strawberry.UNSET,
        description="USD per million input tokens written to cache. Null: the input rate.",
    )
    reasoning_per_mtok: float | None = strawberry.field(
        default=strawberry.UNSET,
        description="USD per million reasoning tokens. Null: the output rate.",
    )
    description: str | None = strawberry.field(
        default=strawberry.UNSET, description="A note for people."
    )


# GraphQL input field -> column
_COLUMNS = {
    "model": "model",
    "input_per_mtok": "input_mtok",
    "output_per_mtok": "output_mtok",
    "provider": "provider",
    "effective_from": "effective_from",
    "effective_until": "effective_until",
    "cache_read_per_mtok": "cache_read_mtok",
    "cache_write_per_mtok": "cache_write_mtok",
    "reasoning_per_mtok": "reasoning_mtok",
    "description": "description",
}


def _values(source: Any) -> dict[str, Any]:
    """Columns given in an input or patch (UNSET fields left out; null clears)."""
    out = {
        column: getattr(source, name)
        for name, column in _COLUMNS.items()
        if getattr(source, name) is not strawberry.UNSET
    }
    regex = source.model_is_regex
    if regex is not strawberry.UNSET and regex is not None:
        out["model_match"] = "regex" if regex else "exact"
    return out


@strawberry.type(description="The result of a price override mutation.")
class PriceOverridePayload:
    price_override: PriceOverride | None = strawberry.field(
        description="The override as stored; null on errors."
    )
    user_errors: list[UserError] = strawberry.field(
        description="What was wrong with the input; empty on success."
    )


@strawberry.type(description="What repricing changed. Costs the caller provided are never touched.")
class RepriceResult:
    scanned: int = strawberry.field(description="Computed and unpriced events looked at.")
    changed: int = strawberry.field(description="Events whose stored cost changed.")
    newly_priced: int = strawberry.field(description="Unpriced events that now have a price.")
    still_unpriced: int = strawberry.field(description="Events still without a price (count).")
    cost_delta_usd: float = strawberry.field(
        description="New total cost minus old total cost, in USD."
    )
    batches: int = strawberry.field(description="Transactions used (count).")
    days_rebuilt: list[date] = strawberry.field(description="UTC days whose rollups were rebuilt.")
    audit_event_id: strawberry.ID = strawberry.field(
        description="The audit event that records the repricing."
    )


def _errors(problems: list[tuple[str, str]]) -> list[UserError]:
    return [UserError(field=f, message=m, code="INVALID_PRICE") for f, m in problems]


def _actor(info: TallyInfo) -> tuple[int, Actor]:
    principal = info.context.require(Permission.ADMIN)
    return principal.workspace_id, Actor(principal.key_id, "api_key", info.context.client_ip)


def _not_found(override_id: str) -> PriceOverridePayload:
    error = UserError(field="id", message=f"no price override {override_id}", code="NOT_FOUND")
    return PriceOverridePayload(price_override=None, user_errors=[error])


@strawberry.type
class PriceMutation:
    @strawberry.mutation(description="Add a price override (admin). Applies to new events now.")
    async def create_price_override(
        self,
        info: TallyInfo,
        input: Annotated[
            PriceOverrideInput,
            strawberry.argument(description="The new override."),
        ],
    ) -> PriceOverridePayload:
        workspace_id, actor = _actor(info)
        values = {"model_match": "exact", **_values(input)}
        problems = check_override(values)
        if problems:
            return PriceOverridePayload(price_override=None, user_errors=_errors(problems))
        services = info.context.services
        created = await repo.create_override(services.db, workspace_id, values, actor)
        await services.prices.refresh()
        return PriceOverridePayload(price_override=PriceOverride.of(created), user_errors=[])

    @strawberry.mutation(description="Change a price override (admin).")
    async def update_price_override(
        self,
        info: TallyInfo,
        id: IdArg,
        patch: Annotated[
            PriceOverridePatch,
            strawberry.argument(description="The fields to change."),
        ],
    ) -> PriceOverridePayload:
        workspace_id, actor = _actor(info)
        services = info.context.services
        current = await repo.get_override(services.db, workspace_id, str(id))
        if current is None:
            return _not_found(str(id))
        changes = _values(patch)
        merged = {c: getattr(current, c) for c in repo.EDITABLE} | changes
        problems = check_override(merged)
        if problems:
            return PriceOverridePayload(price_override=None, user_errors=_errors(problems))
        updated = await repo.update_override(services.db, workspace_id, str(id), changes, actor)
        await services.prices.refresh()
        if updated is None:
            return _not_found(str(id))
        return PriceOverridePayload(price_override=PriceOverride.of(updated), user_errors=[])

    @strawberry.mutation(description="Delete a price override (admin).")
    async def delete_price_override(
        self,
        info: TallyInfo,
        id: Annotated[
            strawberry.ID,
            strawberry.argument(description="The override's id."),
        ],
    ) -> PriceOverridePayload:
        workspace_id, actor = _actor(info)
        services = info.context.services
        removed = await repo.delete_override(services.db, workspace_id, str(id), actor)
        await services.prices.refresh()
        if removed is None:
            return _not_found(str(id))
        return PriceOverridePayload(price_override=PriceOverride.of(removed), user_errors=[])

    @strawberry.mutation(
        description="Recompute the stored cost of computed and unpriced events in the range "
        "(and filter) with today's prices, then fix rollups and sessions (admin; audited)."
    )
    async def reprice_events(
        self, info: TallyInfo, range: RangeArg, filter: FilterArg = None
    ) -> RepriceResult:
        workspace_id, actor = _actor(info)
        window = range.resolve()
        services = info.context.services
        report, audit_id = await reprice(
            services.db,
            services.prices,
            services.ingest.pricer,
            workspace_id,
            window,
            filter_spec(filter),
            actor,
        )
        return RepriceResult(
            scanned=report.scanned,
            changed=report.changed,
            newly_priced=report.newly_priced,
            still_unpriced=report.still_unpriced,
            cost_delta_usd=to_usd(report.delta_nanousd),
            batches=report.batches,
            days_rebuilt=report.days,
            audit_event_id=strawberry.ID(audit_id),
        )
