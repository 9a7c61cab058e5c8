"""Alert rules: `alertRules`, `alertRule(id)`, `alertFirings` (READ) and `createAlertRule`,
`updateAlertRule`, `deleteAlertRule` (MANAGE)."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

import strawberry

from tallyql.alerts import model, store
from tallyql.alerts.model import AlertError, AlertState, Operator
from tallyql.auth.principal import Permission
from tallyql.engine.registry import Metric as EngineMetric
from tallyql.schema.analytics import Metric
from tallyql.schema.changes import DeletePayload, actor_of, invalid, not_found
from tallyql.schema.common import EventFilter
from tallyql.schema.context import TallyInfo
from tallyql.schema.filter_output import filter_as_input
from tallyql.schema.ingest import UserError
from tallyql.schema.live_types import AlertOperator
from tallyql.schema.pages import Connection, connection
from tallyql.schema.scalars import JSON

AlertStateType = strawberry.enum(AlertState, name="AlertState", description="OK or FIRING.")


@strawberry.enum(description="Whether a firing is still going on.")
class FiringState(Enum):
    FIRING = "firing"
    RESOLVED = "resolved"


@strawberry.type(description="metric over the trailing window <operator> threshold.")
class AlertRule:
    id: strawberry.ID
    name: str
    metric: Metric  # type: ignore[valid-type]
    window_minutes: int
    filter: JSON = strawberry.field(description="The rule's EventFilter ({} for all events).")
    operator: AlertOperator  # type: ignore[valid-type]
    threshold: float
    cooldown_minutes: int = strawberry.field(description="Least time between two firings.")
    webhook_ids: list[strawberry.ID]
    enabled: bool
    state: AlertStateType  # type: ignore[valid-type]
    last_value: float | None = strawberry.field(description="The metric at the last evaluation.")
    last_evaluated_at: datetime | None
    last_fired_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, rule: model.AlertRule) -> AlertRule:
        return cls(
            id=strawberry.ID(rule.id),
            name=rule.name,
            metric=rule.metric,
            window_minutes=rule.window_seconds // 60,
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
    id: strawberry.ID
    rule_id: strawberry.ID
    rule_name: str
    metric: Metric  # type: ignore[valid-type]
    operator: AlertOperator  # type: ignore[valid-type]
    threshold: float
    window_minutes: int
    value: float | None = strawberry.field(description="The metric when the rule fired.")
    fired_at: datetime
    resolved_at: datetime | None
    resolved_value: float | None
    state: FiringState


@strawberry.input(description="A new alert rule.")
class AlertRuleInput:
    name: str
    metric: Metric  # type: ignore[valid-type]
    window_minutes: int
    operator: AlertOperator  # type: ignore[valid-type]
    threshold: float
    filter: EventFilter | None = None
    cooldown_minutes: int = 60
    webhook_ids: list[strawberry.ID] | None = None
    enabled: bool = True


@strawberry.input(description="Fields to change; omitted (or null) fields keep their value.")
class AlertRulePatch:
    name: str | None = None
    metric: Metric | None = None  # type: ignore[valid-type]
    window_minutes: int | None = None
    operator: AlertOperator | None = None  # type: ignore[valid-type]
    threshold: float | None = None
    filter: EventFilter | None = None
    cooldown_minutes: int | None = None
    webhook_ids: list[strawberry.ID] | None = None
    enabled: bool | None = None


@strawberry.type
class AlertRulePayload:
    alert_rule: AlertRule | None
    user_errors: list[UserError]


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
    )


def _firing(row: dict[str, Any]) -> AlertFiring:
    return AlertFiring(
        id=strawberry.ID(row["id"]),
        rule_id=strawberry.ID(row["rule_id"]),
        rule_name=row["rule_name"],
        metric=EngineMetric(row["metric"]),
        operator=Operator(row["operator"]),
        threshold=row["threshold"],
        window_minutes=row["window_seconds"] // 60,
        value=row["value"],
        fired_at=row["fired_at"],
        resolved_at=row["resolved_at"],
        resolved_value=row["resolved_value"],
        state=FiringState.FIRING if row["resolved_at"] is None else FiringState.RESOLVED,
    )


@strawberry.type
class AlertQuery:
    @strawberry.field(description="The workspace's alert rules, oldest first.")
    async def alert_rules(
        self, info: TallyInfo, first: int = 50, after: str | None = None
    ) -> Connection[AlertRule]:
        principal = info.context.require(Permission.READ)
        db = info.context.services.db
        page = await store.list_rules(db, principal.workspace_id, first, after)
        nodes = [AlertRule.of(model.AlertRule.from_row(r)) for r in page.rows]
        return connection(nodes, page.cursors, page.total_count, page.has_next_page, after)

    @strawberry.field
    async def alert_rule(self, info: TallyInfo, id: strawberry.ID) -> AlertRule | None:
        principal = info.context.require(Permission.READ)
        rule = await store.get_rule(info.context.services.db, principal.workspace_id, str(id))
        return AlertRule.of(rule) if rule else None

    @strawberry.field(description="Firings of the workspace's rules (or one rule), newest first.")
    async def alert_firings(
        self,
        info: TallyInfo,
        rule_id: strawberry.ID | None = None,
        first: int = 50,
        after: str | None = None,
    ) -> Connection[AlertFiring]:
        principal = info.context.require(Permission.READ)
        page = await store.list_firings(
            info.context.services.db,
            principal.workspace_id,
            str(rule_id) if rule_id is not None else None,
            first,
            after,
        )
        nodes = [_firing(r) for r in page.rows]
        return connection(nodes, page.cursors, page.total_count, page.has_next_page, after)


@strawberry.type
class AlertMutation:
    @strawberry.mutation(description="Create an alert rule.")
    async def create_alert_rule(self, info: TallyInfo, input: AlertRuleInput) -> AlertRulePayload:
        principal = info.context.require(Permission.MANAGE)
        try:
            rule = await store.create_rule(
                info.context.services.db,
                principal.workspace_id,
                _fields(input),
                actor_of(info, principal),
            )
        except AlertError as exc:
            return AlertRulePayload(alert_rule=None, user_errors=invalid(exc.field, str(exc)))
        return AlertRulePayload(alert_rule=AlertRule.of(rule), user_errors=[])

    @strawberry.mutation(description="Change an alert rule.")
    async def update_alert_rule(
        self, info: TallyInfo, id: strawberry.ID, input: AlertRulePatch
    ) -> AlertRulePayload:
        principal = info.context.require(Permission.MANAGE)
        try:
            rule = await store.update_rule(
                info.context.services.db,
                principal.workspace_id,
                str(id),
                _fields(input),
                actor_of(info, principal),
            )
        except AlertError as exc:
            return AlertRulePayload(alert_rule=None, user_errors=invalid(exc.field, str(exc)))
        if rule is None:
            return AlertRulePayload(alert_rule=None, user_errors=not_found("alert rule"))
        return AlertRulePayload(alert_rule=AlertRule.of(rule), user_errors=[])

    @strawberry.mutation(description="Delete an alert rule (its firings are kept).")
    async def delete_alert_rule(self, info: TallyInfo, id: strawberry.ID) -> DeletePayload:
        principal = info.context.require(Permission.MANAGE)
        deleted = await store.delete_rule(
            info.context.services.db, principal.workspace_id, str(id), actor_of(info, principal)
        )
        if not deleted:
            return DeletePayload(deleted_id=None, user_errors=not_found("alert rule"))
        return DeletePayload(deleted_id=id, user_errors=[])
