"""Event filters: what the caller selects, compiled to SQL conditions.

Lists mean "any of"; different fields combine with AND. `status_codes` are HTTP codes
(integers). `groups` means the groups' members as
they stand now. Conditions are compiled against any table whose columns carry the events'
names (the events table, and rollups for the dimensions they keep).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.sql.base import ReadOnlyColumnCollection
from sqlalchemy.sql.elements import KeyedColumnElement

from tallyql.storage import dialect as sqld
from tallyql.storage.dialect import Dialect
from tallyql.storage.rollups.declarations import LOW_CARDINALITY
from tallyql.storage.tables import group_members

# filter field -> events column
LIST_FILTERS: dict[str, str] = {
    "providers": "provider",
    "models": "model",
    "kinds": "kind",
    "statuses": "status",
    "error_types": "error_type",
    "users": "user_id",
    "departments": "department",
    "api_keys": "api_key_id",
    "callers": "caller",
    "caller_ips": "caller_ip",
    "agents": "agent_id",
    "agent_instances": "agent_instance_id",
    "sessions": "session_id",
    "traces": "trace_id",
    "runs": "run_id",
    "nodes": "node",
    "tools": "tool",
    "mcp_servers": "mcp_server",
    "gateways": "gateway",
    "protocols": "protocol",
    "request_types": "request_type",
    "billing_modes": "billing_mode",
    "policies": "policy_id",
    "cost_sources": "cost_source",
}


COVERED_FILTERS = frozenset(
    {*(name for name, col in LIST_FILTERS.items() if col in LOW_CARDINALITY), "is_byok"}
    | {"status_codes"}
)
"""The filter fields of the coverage rule (see `registry.COVERED_DIMENSIONS`)."""


@dataclass(frozen=True)
class MetadataMatch:
    key: str
    value: str


@dataclass(frozen=True)
class EventFilterSpec:
    providers: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    error_types: tuple[str, ...] = ()
    users: tuple[str, ...] = ()
    departments: tuple[str, ...] = ()
    api_keys: tuple[str, ...] = ()
    callers: tuple[str, ...] = ()
    caller_ips: tuple[str, ...] = ()
    agents: tuple[str, ...] = ()
    agent_instances: tuple[str, ...] = ()
    sessions: tuple[str, ...] = ()
    traces: tuple[str, ...] = ()
    runs: tuple[str, ...] = ()
    nodes: tuple[str, ...] = ()
    tools: tuple[str, ...] = ()
    mcp_servers: tuple[str, ...] = ()
    gateways: tuple[str, ...] = ()
    protocols: tuple[str, ...] = ()
    request_types: tuple[str, ...] = ()
    billing_modes: tuple[str, ...] = ()
    policies: tuple[str, ...] = ()
    cost_sources: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    metadata: tuple[MetadataMatch, ...] = ()
    is_byok: bool | None = None
    status_codes: tuple[int, ...] = ()

    def columns_used(self) -> set[str]:
        """Event columns the filter reads (a rollup must keep them to answer it)."""
        used = {col for name, col in LIST_FILTERS.items() if getattr(self, name)}
        if self.groups:
            used.add("user_id")
        if self.tags:
            used.add("tags")
        if self.metadata:
            used.add("metadata")
        if self.is_byok is not None:
            used.add("is_byok")
        if self.status_codes:
            used.add("status_code")
        return used

    def is_empty(self) -> bool:
        return not any(getattr(self, f.name) not in ((), None) for f in fields(self))


NO_FILTER = EventFilterSpec()


def filter_conditions(
    spec: EventFilterSpec,
    columns: ReadOnlyColumnCollection[str, KeyedColumnElement[Any]],
    dialect: Dialect,
) -> list[ColumnElement[bool]]:
    """SQL conditions for a filter over a table with the events' column names (group
    membership is looked up in the row's own workspace)."""
    conditions: list[ColumnElement[bool]] = []
    for name, col in LIST_FILTERS.items():
        values = getattr(spec, name)
        if values:
            conditions.append(columns[col].in_(list(values)))
    if spec.groups:
        members = select(group_members.c.user_id).where(
            group_members.c.workspace_id == columns["workspace_id"],
            group_members.c.group_name.in_(list(spec.groups)),
        )
        conditions.append(columns["user_id"].in_(members))
    if spec.is_byok is not None:
        conditions.append(columns["is_byok"].is_(spec.is_byok))
    if spec.status_codes:  # rollups key an absent code as -1, which no listed code equals
        conditions.append(columns["status_code"].in_(list(spec.status_codes)))
    if spec.tags:
        conditions.append(sqld.tags_overlap(dialect, columns["tags"], spec.tags))
    for match in spec.metadata:
        conditions.append(sqld.json_text(dialect, columns["metadata"], match.key) == match.value)
    return conditions
