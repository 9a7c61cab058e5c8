"""The GraphQL schema: every domain's root fields merged into Query, Mutation and
Subscription.

A domain is one module, `<domain>.py` (its types and root fields); one that outgrows a module
adds `<domain>_<part>.py` modules (`_types`, `_mutations`, live's `_render`, analytics'
`_overview`). What every domain builds on is in `base/`."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.extensions.max_aliases import create_validator as alias_limit
from strawberry.extensions.query_depth_limiter import create_validator as depth_limit
from strawberry.extensions.runner import SchemaExtensionsRunner
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext

from tallyql.config import Settings
from tallyql.engine.query.cost_meter import KeyBuckets
from tallyql.schema.agent_metrics import AgentMetricsQuery
from tallyql.schema.agents import AgentsQuery
from tallyql.schema.alerts import AlertMutation, AlertQuery
from tallyql.schema.analytics import AnalyticsQuery
from tallyql.schema.ask import AskQuery
from tallyql.schema.audit import AuditMutation, AuditQuery
from tallyql.schema.base.documents import CachedDocuments, Documents
from tallyql.schema.base.errors import ErrorCodes, ExplainPlans, log_internal_errors
from tallyql.schema.base.hooks import CachedHooksRunner
from tallyql.schema.base.introspection import introspection_policy
from tallyql.schema.base.limits import RequestLimits
from tallyql.schema.base.scalars import SCALAR_MAP
from tallyql.schema.budgets import BudgetMutation, BudgetQuery
from tallyql.schema.costs import CostQuery
from tallyql.schema.directory import DirectoryQuery
from tallyql.schema.directory_mutations import DirectoryMutation
from tallyql.schema.ingest import IngestMutation
from tallyql.schema.live import LiveSubscription
from tallyql.schema.me import MeQuery
from tallyql.schema.platform import PlatformQuery
from tallyql.schema.prices import PriceQuery
from tallyql.schema.prices_mutations import PriceMutation
from tallyql.schema.providers import ProviderMutation, ProviderQuery
from tallyql.schema.reports import ReportMutation, ReportQuery
from tallyql.schema.requests import RequestQuery
from tallyql.schema.sessions import SessionQuery
from tallyql.schema.slices import SlicesQuery
from tallyql.schema.standby_reads import StandbyReads
from tallyql.schema.statements import StatementQuery
from tallyql.schema.webhooks import WebhookMutation, WebhookQuery

QUERY_TYPES: tuple[type, ...] = (
    MeQuery,
    RequestQuery,
    AnalyticsQuery,
    AskQuery,
    PriceQuery,
    PlatformQuery,
    CostQuery,
    StatementQuery,
    ReportQuery,
    ProviderQuery,
    SessionQuery,
    SlicesQuery,
    AgentsQuery,
    AgentMetricsQuery,
    AuditQuery,
    DirectoryQuery,
    BudgetQuery,
    AlertQuery,
    WebhookQuery,
)
MUTATION_TYPES: tuple[type, ...] = (
    IngestMutation,
    PriceMutation,
    AuditMutation,
    DirectoryMutation,
    BudgetMutation,
    AlertMutation,
    WebhookMutation,
    ReportMutation,
    ProviderMutation,
)
SUBSCRIPTION_TYPES: tuple[type, ...] = (LiveSubscription,)


class TallySchema(strawberry.Schema):
    key_buckets: KeyBuckets | None = None
    """Every key's cost points (engine/query/cost_meter.py), shared by the schema's requests."""
    documents: Documents | None = None
    """The parse and validation caches (schema/base/documents.py), shared with the HTTP view."""

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """Log internal errors with their tracebacks; user mistakes are not server errors."""
        log_internal_errors(errors)

    def create_extensions_runner(
        self, execution_context: ExecutionContext, extensions: list[SchemaExtension]
    ) -> SchemaExtensionsRunner:
        """strawberry's runner with each extension class's hooks looked up once (base/hooks.py)."""
        return CachedHooksRunner(execution_context=execution_context, extensions=extensions)


@lru_cache(maxsize=1)
def _root_types() -> tuple[type, type, type]:
    query = _merged("Query", QUERY_TYPES, "Everything a key of the workspace may read.")
    mutation = _merged(
        "Mutation", MUTATION_TYPES, "Changes; each answers with userErrors rather than failing."
    )
    subscription = _merged(
        "Subscription", SUBSCRIPTION_TYPES, "Live streams, over WebSocket or SSE."
    )
    return query, mutation, subscription


def _merged(name: str, types: tuple[type, ...], description: str) -> type:
    """One root type holding every domain's fields, described."""
    merged = merge_types(name, types)
    # unchecked below: strawberry sets __strawberry_definition__ at run time
    merged.__strawberry_definition__.description = description  # type: ignore[attr-defined]
    return merged


def build_schema(settings: Settings | None = None) -> TallySchema:
    settings = settings or Settings()
    query, mutation, subscription = _root_types()
    # The depth and alias limits as validation rules made once: the validation cache is keyed
    # by the document and rules, and QueryDepthLimiter / MaxAliasesLimiter make new rule
    # classes for every request, so that no validation was ever a cache hit.
    documents = Documents(
        settings.graphql_max_tokens,
        [depth_limit(settings.graphql_max_depth, None), alias_limit(settings.graphql_max_aliases)],
        settings.graphql_cache_size,
    )
    # one bucket of cost points per key for the schema's life (that is, the server's)
    buckets = KeyBuckets(settings.cost_key_limit_per_minute)
    extensions: list[Any] = [
        lambda: CachedDocuments(documents),
        ErrorCodes,
        ExplainPlans,
        lambda: RequestLimits(settings, buckets),
    ]
    if settings.read_url_list:  # without standbys no hook at all runs per operation
        extensions.insert(3, StandbyReads)
    policy = introspection_policy(settings.introspection)
    if policy is not None:
        extensions.append(policy)  # after the validation cache: adds to its result
    schema = TallySchema(
        query=query,
        mutation=mutation,
        subscription=subscription,
        config=StrawberryConfig(scalar_map=SCALAR_MAP),
        extensions=extensions,
    )
    schema.documents = documents
    schema.key_buckets = buckets  # the HTTP view refuses an empty bucket before the body
    return schema


def export_sdl() -> str:
    return build_schema().as_str() + "\n"
