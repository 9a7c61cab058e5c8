"""Per-request limits of GraphQL operations, settled before anything costly runs.

- Permission first: each root field's least permission (ROOT_PERMISSIONS) is checked against
  the caller's role once the document is parsed and validated, before graphql-core coerces
  the variables: a viewer sending ingestEvents with 50,000 events is refused at once, its
  events never read. The resolvers still check their own permissions in full.
- Cost: every root field (each alias) pays FIELD_POINTS and its page size before execution;
  every analytics question pays for its plans before it runs (engine/query/cost.py), from the
  request's budget and its key's budget per minute (engine/query/cost_meter.py). The answer says
  what was spent and what is left in `extensions.cost`; a refusal is an error with code
  COST_LIMIT or RATE_LIMITED, and over HTTP RATE_LIMITED answers 429 with Retry-After.
- Deadline and fair share: a query's reads start before its deadline and take at most its
  workspace's share of the read connections (storage/read_limits.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextvars import ContextVar, Token
from typing import Any

from graphql import ExecutionResult as GraphQLExecutionResult
from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    VariableNode,
)
from starlette.responses import Response
from strawberry.extensions import SchemaExtension

from tallyql.auth.principal import Permission
from tallyql.config import Settings
from tallyql.engine.query.cost import field_cost
from tallyql.engine.query.cost_meter import CostLimitExceeded, CostMeter, KeyBuckets, RateLimited
from tallyql.storage.read_limits import DEADLINE, TENANT

READ = Permission.READ
ROOT_PERMISSIONS: dict[str, dict[str, Permission | None]] = {
    "query": {
        "me": None,
        **{
            name: READ
            for name in [
                "requests",
                "request",
                "overview",
                "timeseries",
                "breakdown",
                "hourlyDistribution",
                "errors",
                "metrics",
                "priceOverrides",
                "models",
                "workspaces",
                "costInsights",
                "modelComparison",
                "dailyCostByModel",
                "statements",
                "statement",
                "ask",
                "chart",
                "chartPresets",
                "reports",
                "report",
                "providerConnection",
                "providerCredits",
                "providerKey",
                "sessions",
                "session",
                "sessionStats",
                "toolUsage",
                "security",
                "agents",
                "gateways",
                "auditEvents",
                "agentMetrics",
                "users",
                "user",
                "groups",
                "group",
                "budgets",
                "budget",
                "alertRules",
                "alertRule",
                "alertFirings",
                "webhooks",
                "webhookDeliveries",
            ]
        },
    },
    "mutation": {
        "ingestEvents": Permission.INGEST,
        "recordAuditEvents": Permission.INGEST,
        "createPriceOverride": Permission.ADMIN,
        "updatePriceOverride": Permission.ADMIN,
        "deletePriceOverride": Permission.ADMIN,
        "repriceEvents": Permission.ADMIN,
        "createBudget": Permission.ADMIN,
        "updateBudget": Permission.ADMIN,
        "deleteBudget": Permission.ADMIN,
        "upsertUsers": Permission.MANAGE,
        "setGroupMembers": Permission.MANAGE,
        "createAlertRule": Permission.MANAGE,
        "updateAlertRule": Permission.MANAGE,
        "deleteAlertRule": Permission.MANAGE,
        "createWebhook": Permission.MANAGE,
        "deleteWebhook": Permission.MANAGE,
        "createReport": Permission.MANAGE,
        "updateReport": Permission.MANAGE,
        "deleteReport": Permission.MANAGE,
        "runReport": Permission.MANAGE,
        "connectProvider": Permission.ADMIN,
        "disconnectProvider": Permission.ADMIN,
        "syncProviderActivity": Permission.ADMIN,
    },
}
"""The least permission of each root field (its resolver may require more); None: any key.
A test keeps it complete: every root field of Query and Mutation is listed."""
INTROSPECTION = frozenset({"__typename", "__schema", "__type"})


def root_fields(
    selection_set: SelectionSetNode,
    fragments: dict[str, FragmentDefinitionNode],
    seen: frozenset[str] = frozenset(),
) -> Iterator[FieldNode]:
    """The fields at the root of an operation, through fragments (each alias once)."""
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            yield selection
        elif isinstance(selection, InlineFragmentNode):
            yield from root_fields(selection.selection_set, fragments, seen)
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            fragment = fragments.get(name)
            if fragment is not None and name not in seen:  # validation refuses cycles too
                yield from root_fields(fragment.selection_set, fragments, seen | {name})


def page_size(node: FieldNode, variables: dict[str, Any] | None) -> int | None:
    """The `first` argument of a root field, when it is a number (literal or variable)."""
    for argument in node.arguments or ():
        if argument.name.value != "first":
            continue
        value = argument.value
        if isinstance(value, IntValueNode):
            return int(value.value)
        if isinstance(value, VariableNode) and variables:
            found = variables.get(value.name.value)
            return found if isinstance(found, int) and not isinstance(found, bool) else None
    return None


def _refusal(message: str, code: str, path: str | None = None) -> GraphQLExecutionResult:
    error = GraphQLError(message, path=[path] if path else None, extensions={"code": code})
    return GraphQLExecutionResult(data=None, errors=[error])


class RequestLimits(SchemaExtension):
    """Permission before coercion, the cost meter, the deadline and the workspace share."""

    def __init__(self, settings: Settings, buckets: KeyBuckets) -> None:
        self.settings = settings
        self.buckets = buckets
        self.meter: CostMeter | None = None
        """This operation's meter (the context may serve several: a WebSocket's)."""

    def _new_meter(self) -> CostMeter:
        principal = getattr(self.execution_context.context, "principal", None)
        key = principal.key_id if principal is not None else None
        return CostMeter(self.settings.cost_request_limit, self.buckets, key)

    def on_operation(self) -> Iterator[None]:
        """A document over TALLYQL_GRAPHQL_MAX_QUERY_BYTES is refused before it is parsed:
        whitespace, comments and string literals are not tokens, yet cost lexing time."""
        query = self.execution_context.query
        limit = self.settings.graphql_max_query_bytes
        if query is not None and len(query) * 4 > limit and len(query.encode()) > limit:
            raise GraphQLError(
                f"the GraphQL document exceeds the limit of {limit} bytes "
                "(TALLYQL_GRAPHQL_MAX_QUERY_BYTES)",
                extensions={"code": "QUERY_TOO_LARGE"},
            )
        yield

    def on_execute(self) -> Iterator[None]:
        ec = self.execution_context
        context = ec.context
        principal = getattr(context, "principal", None)
        meter = self.meter = self._new_meter()
        context.meter = meter
        operation = self._operation()
        kind = operation.operation if operation is not None else None
        if operation is not None and kind in (OperationType.QUERY, OperationType.MUTATION):
            fragments = {
                d.name.value: d
                for d in (ec.graphql_document.definitions if ec.graphql_document else ())
                if isinstance(d, FragmentDefinitionNode)
            }
            fields = list(root_fields(operation.selection_set, fragments))
            refused = self._forbidden(kind, fields, principal)
            if refused is None:
                refused = self._pay_fields(meter, fields, ec.variables)
            if refused is not None:
                ec.result = refused
        tokens: list[tuple[ContextVar[Any], Token[Any]]] = []
        if principal is not None and kind in (OperationType.QUERY, OperationType.MUTATION):
            tokens.append((TENANT, TENANT.set(principal.workspace_id)))
        if kind is OperationType.QUERY:
            deadline = time.monotonic() + self.settings.request_deadline_seconds
            tokens.append((DEADLINE, DEADLINE.set(deadline)))
        try:
            yield
        finally:
            for var, token in reversed(tokens):
                var.reset(token)
            self._answer_status(context, meter)

    def _operation(self) -> OperationDefinitionNode | None:
        ec = self.execution_context
        if ec.graphql_document is None:
            return None
        operations = [
            d for d in ec.graphql_document.definitions if isinstance(d, OperationDefinitionNode)
        ]
        if ec.operation_name is None:
            return operations[0] if len(operations) == 1 else None
        return next((o for o in operations if o.name and o.name.value == ec.operation_name), None)

    @staticmethod
    def _forbidden(
        kind: OperationType, fields: list[FieldNode], principal: Any
    ) -> GraphQLExecutionResult | None:
        if principal is None:
            return None  # WebSocket operations: authenticated at connection_init
        table = ROOT_PERMISSIONS[kind.value]
        for node in fields:
            name = node.name.value
            if name in INTROSPECTION:
                continue
            needed = table.get(name)
            if needed is not None and not principal.can(needed):
                return _refusal(
                    f"a {principal.role.value} key may not do this (needs {needed.value} "
                    f"permission for {name})",
                    "FORBIDDEN",
                    node.alias.value if node.alias else name,
                )
        return None

    @staticmethod
    def _pay_fields(
        meter: CostMeter, fields: list[FieldNode], variables: dict[str, Any] | None
    ) -> GraphQLExecutionResult | None:
        points = sum(
            field_cost(page_size(node, variables))
            for node in fields
            if node.name.value not in INTROSPECTION
        )
        try:
            meter.charge(points, f"{len(fields)} root fields")
        except CostLimitExceeded as refusal:
            return _refusal(str(refusal), refusal.code)
        except RateLimited as refusal:
            return _refusal(str(refusal), refusal.code)
        return None

    @staticmethod
    def _answer_status(context: Any, meter: CostMeter) -> None:
        """Over HTTP, a key over its budget per minute gets 429 with Retry-After."""
        response = getattr(context, "response", None)
        if meter.retry_after is not None and isinstance(response, Response):
            response.status_code = 429
            response.headers["Retry-After"] = str(meter.retry_after)

    def get_results(self) -> dict[str, Any]:
        """`extensions.cost` on every answer; nothing spent when refused before execution
        (a syntax error, a failed validation, a document over its limit)."""
        return {"cost": (self.meter or self._new_meter()).summary()}
