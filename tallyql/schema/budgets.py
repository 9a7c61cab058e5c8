"""Budgets: `budgets`, `budget(id)` (READ) and `createBudget`, `updateBudget`,
`deleteBudget` (ADMIN). Spend, projection and status come from the engine."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, TypeAlias

import strawberry

from tallyql.auth.principal import Permission, Principal
from tallyql.budgets import model, store
from tallyql.budgets.model import BudgetScope
from tallyql.budgets.status import BudgetState, BudgetStatus, budget_status
from tallyql.engine.query.periods import Period
from tallyql.money import to_usd
from tallyql.schema.base.common import AfterArg, EventFilter, FirstArg, IdArg
from tallyql.schema.base.context import TallyInfo
from tallyql.schema.base.crud import DeletePayload, actor_of, deleted, saved
from tallyql.schema.base.described import describe_values
from tallyql.schema.base.errors import UserError
from tallyql.schema.base.filter_output import filter_as_input
from tallyql.schema.base.pages import Connection, row_connection
from tallyql.schema.base.scalars import JSON
from tallyql.schema.live_types import BudgetPeriod

BudgetScopeType: TypeAlias = BudgetScope  # strawberry.enum below marks the class in place
strawberry.enum(BudgetScopeType, name="BudgetScope", description="What a budget's spend covers.")
describe_values(
    BudgetScopeType,
    {
        "WORKSPACE": "Every event of the workspace.",
        "USER": "One end user's events (scopeValue: the user id).",
        "GROUP": "The events of a group's current members (scopeValue: the group id).",
        "API_KEY": "One caller API key's events (scopeValue: the key id).",
        "MODEL": "One model's events (scopeValue: the model).",
        "PROVIDER": "One provider's events (scopeValue: the provider).",
        "FILTER": "The events an EventFilter selects (filter).",
    },
)
BudgetStatusType: TypeAlias = BudgetState  # strawberry.enum below marks the class in place
strawberry.enum(
    BudgetStatusType,
    name="BudgetStatus",
    description="EXCEEDED at 100 %; WARNING from the lowest threshold; AT_RISK when the "
    "projection is above the limit; else OK.",
)
describe_values(
    BudgetStatusType,
    {
        "OK": "Below every threshold and projected within the limit.",
        "AT_RISK": "Projected to pass the limit by the period's end.",
        "WARNING": "At or above the lowest threshold.",
        "EXCEEDED": "At or above 100 % of the limit.",
    },
)


@strawberry.type(description="A spending limit for a period over a scope of the traffic.")
class Budget:
    id: strawberry.ID = strawberry.field(description="The budget's id.")
    name: str = strawberry.field(description="A name for people.")
    amount_usd: float = strawberry.field(description="The limit, in USD.")
    period: BudgetPeriod = strawberry.field(description="The budget's period.")
    timezone: str = strawberry.field(description="IANA zone of the period's boundaries.")
    scope: BudgetScopeType = strawberry.field(description="What the spend covers.")
    scope_value: str | None = strawberry.field(
        description="The user, group, API key, model or provider (for those scopes)."
    )
    filter: JSON | None = strawberry.field(description="The EventFilter of a FILTER budget.")
    thresholds: list[int] = strawberry.field(description="Warning thresholds, in percent.")
    webhook_ids: list[strawberry.ID] = strawberry.field(
        description="Webhooks told when a threshold is crossed."
    )
    created_at: datetime = strawberry.field(description="When the budget was created.")
    updated_at: datetime = strawberry.field(description="When the budget was last changed.")
    _budget: strawberry.Private[model.Budget]
    _status: strawberry.Private[asyncio.Future[BudgetStatus] | None] = None

    async def _get_status(self, info: TallyInfo) -> BudgetStatus:
        if self._status is None:
            self._status = asyncio.ensure_future(
                budget_status(info.context.services.db, self._budget)
            )
        return await self._status

    @strawberry.field(description="Spend in the current period, in USD.")
    async def current_spend_usd(self, info: TallyInfo) -> float:
        return to_usd((await self._get_status(info)).spend_nanousd)

    @strawberry.field(description="Current spend as a percent of the limit.")
    async def percent_used(self, info: TallyInfo) -> float:
        return (await self._get_status(info)).percent_used

    @strawberry.field(
        description="Projected spend at period end: the daily average over the days that "
        "have data, times the days in the period."
    )
    async def projected_spend_usd(self, info: TallyInfo) -> float:
        return to_usd((await self._get_status(info)).projected_nanousd)

    @strawberry.field(description="Days (with fractions) until the period ends.")
    async def days_remaining(self, info: TallyInfo) -> float:
        return (await self._get_status(info)).days_remaining

    @strawberry.field(description="Days of the current period with at least one event.")
    async def days_with_data(self, info: TallyInfo) -> int:
        return (await self._get_status(info)).days_with_data

    @strawberry.field(description="Where the spend stands against the limit.")
    async def status(self, info: TallyInfo) -> BudgetStatusType:
        return (await self._get_status(info)).state

    @strawberry.field(description="Start of the current period.")
    async def period_start(self, info: TallyInfo) -> datetime:
        return (await self._get_status(info)).period_start

    @strawberry.field(description="End (exclusive) of the current period.")
    async def period_end(self, info: TallyInfo) -> datetime:
        return (await self._get_status(info)).period_end

    @strawberry.field(
        description="Thresholds (percent of the limit) already announced in the current period."
    )
    async def crossed_thresholds(self, info: TallyInfo) -> list[int]:
        status = await self._get_status(info)
        return await store.crossed_thresholds(
            info.context.services.db, self._budget, status.period_start
        )

    @classmethod
    def of(cls, budget: model.Budget) -> Budget:
        return cls(
            id=strawberry.ID(budget.id),
            name=budget.name,
            amount_usd=to_usd(budget.amount_nanousd),
            period=budget.period,
            timezone=budget.timezone,
            scope=budget.scope,
            scope_value=budget.scope_value,
            filter=filter_as_input(budget.filter) if budget.scope is BudgetScope.FILTER else None,
            thresholds=list(budget.thresholds),
            webhook_ids=[strawberry.ID(i) for i in budget.webhook_ids],
            created_at=budget.created_at,
            updated_at=budget.updated_at,
            _budget=budget,
        )


@strawberry.input(description="A new budget.")
class BudgetInput:
    name: str = strawberry.field(description="A name for people.")
    amount_usd: float = strawberry.field(description="The limit per period, in USD.")
    period: BudgetPeriod = strawberry.field(
        default=Period.MONTH, description="The budget's period (default MONTH)."
    )
    timezone: str = strawberry.field(
        default="UTC", description="IANA zone of the period's boundaries (default UTC)."
    )
    scope: BudgetScopeType = strawberry.field(
        default=BudgetScope.WORKSPACE, description="What the spend covers (default WORKSPACE)."
    )
    scope_value: str | None = strawberry.field(
        default=None, description="The user, group, API key, model or provider, for those scopes."
    )
    filter: EventFilter | None = strawberry.field(
        default=None, description="The events a FILTER budget covers."
    )
    thresholds: list[int] | None = strawberry.field(
        default=None, description="Percents; default 50, 80, 100."
    )
    webhook_ids: list[strawberry.ID] | None = strawberry.field(
        default=None, description="Webhooks told when a threshold is crossed."
    )


@strawberry.input(description="Fields to change; omitted (or null) fields keep their value.")
class BudgetPatch:
    name: str | None = strawberry.field(default=None, description="New value: a name for people.")
    amount_usd: float | None = strawberry.field(
        default=None, description="New value: the limit per period, in USD."
    )
    period: BudgetPeriod | None = strawberry.field(
        default=None, description="New value: the budget's period (default MONTH)."
    )
    timezone: str | None = strawberry.field(
        default=None, description="New value: iANA zone of the period's boundaries (default UTC)."
    )
    scope: BudgetScopeType | None = strawberry.field(
        default=None, description="New value: what the spend covers (default WORKSPACE)."
    )
    scope_value: str | None = strawberry.field(
        default=None,
        description="New value: the user, group, API key, model or provider, for those scopes.",
    )
    filter: EventFilter | None = strawberry.field(
        default=None, description="New value: the events a FILTER budget covers."
    )
    thresholds: list[int] | None = strawberry.field(
        default=None, description="New value: warning thresholds in percent of the limit."
    )
    webhook_ids: list[strawberry.ID] | None = strawberry.field(
        default=None, description="New value: webhooks told when a threshold is crossed."
    )


@strawberry.type(description="The result of a budget mutation.")
class BudgetPayload:
    budget: Budget | None = strawberry.field(description="The budget as stored; null on errors.")
    user_errors: list[UserError] = strawberry.field(
        description="What was wrong with the input; empty on success."
    )


def _fields(value: BudgetInput | BudgetPatch) -> store.BudgetFields:
    return store.BudgetFields(
        name=value.name,
        amount_usd=value.amount_usd,
        period=value.period,
        timezone=value.timezone,
        scope=value.scope,
        scope_value=value.scope_value,
        filter=value.filter.to_spec() if value.filter is not None else None,
        thresholds=value.thresholds,
        webhook_ids=[str(i) for i in value.webhook_ids] if value.webhook_ids is not None else None,
    )


@strawberry.type
class BudgetQuery:
    @strawberry.field(description="The workspace's budgets, oldest first.")
    async def budgets(
        self, info: TallyInfo, first: FirstArg = 50, after: AfterArg = None
    ) -> Connection[Budget]:
        principal = info.context.require(Permission.READ)
        page = await store.list_budgets(
            info.context.services.db, principal.workspace_id, first, after
        )
        return row_connection(page, after, lambda r: Budget.of(model.Budget.from_row(r)))

    @strawberry.field(description="One budget by id; null when absent.")
    async def budget(self, info: TallyInfo, id: IdArg) -> Budget | None:
        principal = info.context.require(Permission.READ)
        found = await store.get_budget(info.context.services.db, principal.workspace_id, str(id))
        return Budget.of(found) if found else None


@strawberry.type
class BudgetMutation:
    @strawberry.mutation(description="Create a budget (admin).")
    async def create_budget(
        self,
        info: TallyInfo,
        input: Annotated[
            BudgetInput,
            strawberry.argument(description="The new budget."),
        ],
    ) -> BudgetPayload:
        principal = info.context.require(Permission.ADMIN)
        budget, errors = await saved(
            "budget",
            store.create_budget(
                info.context.services.db,
                principal.workspace_id,
                _fields(input),
                actor_of(info, principal),
            ),
        )
        return _payload(info, principal, budget, errors)

    @strawberry.mutation(description="Change a budget (admin).")
    async def update_budget(
        self,
        info: TallyInfo,
        id: IdArg,
        input: Annotated[
            BudgetPatch,
            strawberry.argument(description="The fields to change."),
        ],
    ) -> BudgetPayload:
        principal = info.context.require(Permission.ADMIN)
        budget, errors = await saved(
            "budget",
            store.update_budget(
                info.context.services.db,
                principal.workspace_id,
                str(id),
                _fields(input),
                actor_of(info, principal),
            ),
        )
        return _payload(info, principal, budget, errors)

    @strawberry.mutation(description="Delete a budget (admin).")
    async def delete_budget(self, info: TallyInfo, id: IdArg) -> DeletePayload:
        principal = info.context.require(Permission.ADMIN)
        db = info.context.services.db
        actor = actor_of(info, principal)
        return await deleted(
            "budget", id, store.delete_budget(db, principal.workspace_id, str(id), actor)
        )


def _payload(
    info: TallyInfo, principal: Principal, budget: model.Budget | None, errors: list[UserError]
) -> BudgetPayload:
    if budget is None:
        return BudgetPayload(budget=None, user_errors=errors)
    _kick(info, principal)
    return BudgetPayload(budget=Budget.of(budget), user_errors=[])


def _kick(info: TallyInfo, principal: Principal) -> None:
    """Check the workspace's budgets soon (a new or lowered limit may be crossed already)."""
    live = info.context.services.live
    if live is not None:
        live.budgets.on_batch({principal.workspace_id})
