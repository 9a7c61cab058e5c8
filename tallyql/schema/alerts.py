"""Alert rules: `alertRules`, `alertRule(id)`, `alertFirings` (READ) and `createAlertRule`,
`updateAlertRule`, `deleteAlertRule` (MANAGE; a health rule: the operator only)."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated, Any, TypeAlias

import strawberry

from tallyql.alerts import model, store
from tallyql.alerts.health import HealthCondition
from tallyql.alerts.model import AlertState, Operator
from tallyql.auth.operator import require_operator
from tallyql.auth.principal import Permission, Principal
from tallyql.engine.query.periods import Period
from tallyql.engine.query.registry import Metric as EngineMetric
from tallyql.schema.analytics import Metric
from tallyql.schema.base.common import AfterArg, EventFilter, FirstArg, IdArg
from tallyql.schema.base.context import TallyInfo
from tallyql.schema.base.crud import DeletePayload, actor_of, deleted, invalid, saved
from tallyql.schema.base.described import describe_values
from tallyql.schema.base.errors import UserError
from tallyql.schema.base.filter_output import filter_as_input
from tallyql.schema.base.pages import Connection, row_connection
from tallyql.schema.base.scalars import JSON
from tallyql.schema.live_types import AlertOperator, HealthConditionType

AlertStateType: TypeAlias = AlertState  # strawberry.enum below marks the class in place
strawberry.enum(AlertStateType, name="AlertState", description="OK or FIRING.")
describe_values(
    AlertStateType,
    {"OK": "The condition does not hold.", "FIRING": "The condition holds: the rule is firing."},
)


@strawberry.enum(description="Whether a firing is still going on.")
class FiringState(Enum):
    FIRING = strawberry.enum_value("firing", description="The condition still holds.")
    RESOLVED = strawberry.enum_value("resolved", description="The condition stopped holding.")


@strawberry.enum(description="A calendar window: from the start of the local period to now.")
class CalendarWindow(Enum):
    TODAY = strawberry.enum_value("day", description="Since local midnight.")
    THIS_WEEK = strawberry.enum_value("week", description="Since Monday, local midnight.")
    THIS_MONTH = strawberry.enum_value(
        "month", description="Since the first of the month, local midnight."
    )


@strawberry.type(
    description="metric over the window <operator> threshold; the window trails the "
    "evaluation (windowMinutes) or starts at the local day, week or month (calendarWindow). "
    "A health rule compares a health condition of the server itself instead (health)."
)
class AlertRule:
    id: strawberry.ID = strawberry.field(description="The rule's id.")
    name: str = strawberry.field(description="A name for people.")
    metric: Metric | None = strawberry.field(
        description="The metric measured over the window, e.g. ERROR_RATE or COST_USD; null "
        "for a health rule."
    )
    health: HealthConditionType | None = strawberry.field(
        description="What a health rule watches, measured at each evaluation over every "
        "replica; null for a metric rule."
    )
    window_minutes: int = strawberry.field(
        description="The trailing window the metric is measured over, in minutes; for a "
        "calendar rule the longest its period can be (1,440, 10,080 or 44,640); 0 for a "
        "health rule."
    )
    calendar_window: CalendarWindow | None = strawberry.field(
        description="Measured since the start of the local day, week or month (in timezone); "
        "null: over the trailing windowMinutes."
    )
    timezone: str = strawberry.field(description="The IANA zone of a calendar window.")
    filter: JSON = strawberry.field(description="The rule's EventFilter ({} for all events).")
    operator: AlertOperator = strawberry.field(
        description="How the metric is compared with the threshold."
    )
    threshold: float = strawberry.field(
        description="The threshold, in the metric's unit (a rate is 0 to 1, a cost in USD) or "
        "the health condition's (seconds, events or jobs)."
    )
    cooldown_minutes: int = strawberry.field(
        description="Least time between two firings, in minutes."
    )
    webhook_ids: list[strawberry.ID] = strawberry.field(
        description="Webhooks notified when the rule fires or resolves."
    )
    enabled: bool = strawberry.field(description="Disabled rules are not evaluated.")
    state: AlertStateType = strawberry.field(description="Whether the rule is firing now.")
    last_value: float | None = strawberry.field(
        description="The metric at the last evaluation, in its unit."
    )
    last_evaluated_at: datetime | None = strawberry.field(
        description="When the rule was last evaluated; null before the first time."
    )
    last_fired_at: datetime | None = strawberry.field(
        description="When the rule last started firing."
    )
    created_at: datetime = strawberry.field(description="When the rule was created.")
    updated_at: datetime = strawberry.field(description="When the rule was last changed.")

    @classmethod
    def of(cls, rule: model.AlertRule) -> AlertRule:
        return cls(
            id=strawberry.ID(rule.id),
            name=rule.name,
            metric=rule.metric,
            health=rule.health,
            window_minutes=rule.window_seconds // 60,
            calendar_window=CalendarWindow(rule.calendar.value) if rule.calendar else None,
            timezone=rule.timezone,
            filter=filter_as_input(rule.filter),
            operator=rule.operator,
            threshold=rule.threshold,
            cooldown_minutes=rule.cooldown_seconds // 60,
            webhook_ids=[strawberry.ID(i) for i in rule.webhook_ids],
            enabled=rule.enabled,
            state=rule.state,
            last_value=rule.last_value,
            last_evaluated_at=rule.last_evaluated_at,
            last_fired_at=rule.last_fired_at,
            created_at=rule.created_at,
            updated_at=rule.updated_at,
        )


@strawberry.type(description="A time a rule fired, and when it resolved.")
class AlertFiring:
    id: strawberry.ID = strawberry.field(description="The firing's id.")
    rule_id: strawberry.ID = strawberry.field(description="The rule that fired.")
    rule_name: str = strawberry.field(description="The rule's name when it fired.")
    metric: Metric | None = strawberry.field(
        description="The rule's metric; null for a health rule."
    )
    health: HealthConditionType | None = strawberry.field(
        description="The health rule's condition; null for a metric rule."
    )
    operator: AlertOperator = strawberry.field(description="The rule's operator.")
    threshold: float = strawberry.field(description="The rule's threshold, in the metric's unit.")
    window_minutes: int = strawberry.field(
        description="The window measured when the rule fired, in minutes (for a calendar "
        "rule: since the period's start; 0 for a health rule)."
    )
    value: float | None = strawberry.field(
        description="The metric (or health condition) when the rule fired, in its unit."
    )
    fired_at: datetime = strawberry.field(description="When it started firing.")
    resolved_at: datetime | None = strawberry.field(
        description="When it resolved; null while firing."
    )
    resolved_value: float | None = strawberry.field(
        description="The metric (or health condition) when it resolved, in its unit."
    )
    state: FiringState = strawberry.field(description="Firing or resolved.")


@strawberry.input(
    description="A new alert rule: a metric rule (metric and windowMinutes or calendarWindow) "
    "or a health rule (health; only admin keys of the operator workspace create these)."
)
class AlertRuleInput:
    name: str = strawberry.field(description="A name for people.")
    metric: Metric | None = strawberry.field(
        default=None,
        description="The metric measured over the window, e.g. ERROR_RATE or COST_USD; give "
        "it or health.",
    )
    health: HealthConditionType | None = strawberry.field(
        default=None,
        description="Watch the server's own health instead of a metric (writer stalled or "
        "backlogged, compaction behind, jobs degraded), over every replica; give it or "
        "metric. Operator only.",
    )
    window_minutes: int | None = strawberry.field(
        default=None,
        description="The trailing window the metric is measured over, in minutes (1 to "
        "44,640); give it or calendarWindow.",
    )
    calendar_window: CalendarWindow | None = strawberry.field(
        default=None,
        description='Measure since the start of the local day, week or month ("spend today '
        '> $100"); give it or windowMinutes.',
    )
    timezone: str = strawberry.field(
        default="UTC", description="The IANA zone whose day, week or month a calendar window is."
    )
    operator: AlertOperator = strawberry.field(
        description="How the metric is compared with the threshold."
    )
    threshold: float = strawberry.field(
        description="The threshold, in the metric's unit (a rate is 0 to 1, a cost in USD) or "
        "the health condition's (seconds, events or jobs)."
    )
    filter: EventFilter | None = strawberry.field(
        default=None,
        description="Which events the metric counts; null: all of the workspace (a health "
        "rule takes none).",
    )
    cooldown_minutes: int = strawberry.field(
        default=60, description="Least time between two firings, in minutes."
    )
    webhook_ids: list[strawberry.ID] | None = strawberry.field(
        default=None, description="Webhooks notified when the rule fires or resolves."
    )
    enabled: bool = strawberry.field(default=True, description="Disabled rules are not evaluated.")


@strawberry.input(description="Fields to change; omitted (or null) fields keep their value.")
class AlertRulePatch:
    name: str | None = strawberry.field(default=None, description="New value: a name for people.")
    metric: Metric | None = strawberry.field(
        default=None,
        description="New value: the metric measured over the window, e.g. ERROR_RATE or COST_USD.",
    )
    health: HealthConditionType | None = strawberry.field(
        default=None,
        description="New value: the condition a health rule watches (a metric rule cannot "
        "become one).",
    )
    window_minutes: int | None = strawberry.field(
        default=None,
        description="New value: the trailing window the metric is measured over, in minutes "
        "(a calendar rule becomes a trailing one).",
    )
    calendar_window: CalendarWindow | None = strawberry.field(
        default=None,
        description="New value: measure since the start of the local day, week or month (a "
        "trailing rule becomes a calendar one).",
    )
    timezone: str | None = strawberry.field(
        default=None, description="New value: the IANA zone of a calendar window."
    )
    operator: AlertOperator | None = strawberry.field(
        default=None, description="New value: how the metric is compared with the threshold."
    )
    threshold: float | None = strawberry.field(
        default=None,
        description="New value: the threshold, in the metric's unit (a rate is 0 to 1, a cost in "
        "USD).",
    )
    filter: EventFilter | None = strawberry.field(
        default=None,
        description="New value: which events the metric counts; null: all of the workspace.",
    )
    cooldown_minutes: int | None = strawberry.field(
        default=None, description="New value: least time between two firings, in minutes."
    )
    webhook_ids: list[strawberry.ID] | None = strawberry.field(
        default=None, description="New value: webhooks notified when the rule fires or resolves."
    )
    enabled: bool | None = strawberry.field(
        default=None, description="New value: disabled rules are not evaluated."
    )


@strawberry.type(description="The result of an alert rule mutation.")
class AlertRulePayload:
    alert_rule: AlertRule | None = strawberry.field(
        description="The rule as stored; null on errors."
    )
    user_errors: list[UserError] = strawberry.field(
        description="What was wrong with the input; empty on success."
    )


def _fields(value: AlertRuleInput | AlertRulePatch) -> store.RuleFields:
    return store.RuleFields(
        name=value.name,
        metric=EngineMetric(value.metric.value) if value.metric is not None else None,
        window_seconds=value.window_minutes * 60 if value.window_minutes is not None else None,
        filter=value.filter.to_spec() if value.filter is not None else None,
        operator=Operator(value.operator.value) if value.operator is not None else None,
        threshold=value.threshold,
        cooldown_seconds=(
            value.cooldown_minutes * 60 if value.cooldown_minutes is not None else None
        ),
        webhook_ids=[str(i) for i in value.webhook_ids] if value.webhook_ids is not None else None,
        enabled=value.enabled,
        calendar=Period(value.calendar_window.value) if value.calendar_window else None,
        timezone=value.timezone,
        health=HealthCondition(value.health.value) if value.health is not None else None,
    )


def _firing(row: dict[str, Any]) -> AlertFiring:
    return AlertFiring(
        id=strawberry.ID(row["id"]),
        rule_id=strawberry.ID(row["rule_id"]),
        rule_name=row["rule_name"],
        metric=None if row.get("health") else EngineMetric(row["metric"]),
        health=HealthCondition(row["health"]) if row.get("health") else None,
        operator=Operator(row["operator"]),
        threshold=row["threshold"],
        window_minutes=row["window_seconds"] // 60,
        value=row["value"],
        fired_at=row["fired_at"],
        resolved_at=row["resolved_at"],
        resolved_value=row["resolved_value"],
        state=FiringState.FIRING if row["resolved_at"] is None else FiringState.RESOLVED,
    )


def _require_operator(info: TallyInfo, principal: Principal) -> None:
    """Health rules watch the whole server (every workspace's traffic moves its writer and
    compaction): only its operator creates, changes or deletes them."""
    require_operator(principal, info.context.services.settings)


async def _guard_health_rule(info: TallyInfo, principal: Principal, rule_id: str) -> None:
    """A health rule changes only by the operator's hand (an admin who lost operator scope
    cannot silence it)."""
    rule = await store.get_rule(info.context.services.db, principal.workspace_id, rule_id)
    if rule is not None and rule.health is not None:
        _require_operator(info, principal)


@strawberry.type
class AlertQuery:
    @strawberry.field(description="The workspace's alert rules, oldest first.")
    async def alert_rules(
        self, info: TallyInfo, first: FirstArg = 50, after: AfterArg = None
    ) -> Connection[AlertRule]:
        principal = info.context.require(Permission.READ)
        page = await store.list_rules(
            info.context.services.db, principal.workspace_id, first, after
        )
        return row_connection(page, after, lambda r: AlertRule.of(model.AlertRule.from_row(r)))

    @strawberry.field(description="One alert rule by id; null when absent.")
    async def alert_rule(self, info: TallyInfo, id: IdArg) -> AlertRule | None:
        principal = info.context.require(Permission.READ)
        rule = await store.get_rule(info.context.services.db, principal.workspace_id, str(id))
        return AlertRule.of(rule) if rule else None

    @strawberry.field(description="Firings of the workspace's rules (or one rule), newest first.")
    async def alert_firings(
        self,
        info: TallyInfo,
        rule_id: Annotated[
            strawberry.ID | None,
            strawberry.argument(description="Only this rule's firings; null: every rule's."),
        ] = None,
        first: FirstArg = 50,
        after: AfterArg = None,
    ) -> Connection[AlertFiring]:
        principal = info.context.require(Permission.READ)
        page = await store.list_firings(
            info.context.services.db,
            principal.workspace_id,
            str(rule_id) if rule_id is not None else None,
            first,
            after,
        )
        return row_connection(page, after, _firing)


@strawberry.type
class AlertMutation:
    @strawberry.mutation(description="Create an alert rule.")
    async def create_alert_rule(
        self,
        info: TallyInfo,
        input: Annotated[
            AlertRuleInput,
            strawberry.argument(description="The new rule."),
        ],
    ) -> AlertRulePayload:
        principal = info.context.require(Permission.MANAGE)
        if (input.metric is None) == (input.health is None):
            message = "give metric (a metric rule) or health (a health rule), not both"
            return AlertRulePayload(alert_rule=None, user_errors=invalid("metric", message))
        if input.health is not None:
            _require_operator(info, principal)
        elif input.window_minutes is None and input.calendar_window is None:
            message = "give windowMinutes (a trailing window) or calendarWindow"
            return AlertRulePayload(alert_rule=None, user_errors=invalid("windowMinutes", message))
        rule, errors = await saved(
            "alert rule",
            store.create_rule(
                info.context.services.db,
                principal.workspace_id,
                _fields(input),
                actor_of(info, principal),
            ),
        )
        return AlertRulePayload(alert_rule=AlertRule.of(rule) if rule else None, user_errors=errors)

    @strawberry.mutation(description="Change an alert rule.")
    async def update_alert_rule(
        self,
        info: TallyInfo,
        id: IdArg,
        input: Annotated[
            AlertRulePatch,
            strawberry.argument(description="The fields to change."),
        ],
    ) -> AlertRulePayload:
        principal = info.context.require(Permission.MANAGE)
        await _guard_health_rule(info, principal, str(id))
        rule, errors = await saved(
            "alert rule",
            store.update_rule(
                info.context.services.db,
                principal.workspace_id,
                str(id),
                _fields(input),
                actor_of(info, principal),
            ),
        )
        return AlertRulePayload(alert_rule=AlertRule.of(rule) if rule else None, user_errors=errors)

    @strawberry.mutation(description="Delete an alert rule (its firings are kept).")
    async def delete_alert_rule(self, info: TallyInfo, id: IdArg) -> DeletePayload:
        principal = info.context.require(Permission.MANAGE)
        await _guard_health_rule(info, principal, str(id))
        db = info.context.services.db
        actor = actor_of(info, principal)
        return await deleted(
            "alert rule", id, store.delete_rule(db, principal.workspace_id, str(id), actor)
        )
