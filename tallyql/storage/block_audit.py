"""A blocked call leaves an audit trace: each new event with status `blocked` records an audit
event `block` in the ingest transaction (a writer contributor, see `writer.py`).

The audit event's id is `block:<event id>`, and it is written from the batch's *new* events
only, so a re-sent duplicate event records nothing more (and `ON CONFLICT DO NOTHING` keeps
the insert idempotent even then). It reads:
- actor: the event's user (`user`), else its API key (`api_key`), else nobody (`system`);
- resource: the tool (`tool`, when the event names one), else the model (`model`), else the
  event itself (`event`, its id);
- outcome `denied`, the caller's IP as source, the time of the event;
- details: the policy (`policy_id`, `policy_name`, `policy_description`), the event's id and
  kind, and the MCP server of a tool (JSON null when absent).
"""

from __future__ import annotations

from tallyql.storage.batch import OnlyIf
from tallyql.storage.dialect import Dialect, json_object_sql
from tallyql.storage.tables import EVENT_COLUMNS

BLOCK_ID_PREFIX = "block:"
_DETAILS = (
    ("policy_id", "policy_id"),
    ("policy_name", "policy_name"),
    ("policy_description", "policy_description"),
    ("event_id", "id"),
    ("kind", "kind"),
    ("mcp_server", "mcp_server"),
)


def _details(dialect: Dialect) -> str:
    """The details object; absent values are JSON nulls on both databases."""
    return json_object_sql(dialect, ", ".join(f"'{key}', {column}" for key, column in _DETAILS))


_STATUS = EVENT_COLUMNS.index("status")


def block_audit_statements(dialect: Dialect, source: str) -> list[OnlyIf]:
    """The writer step: one audit event per new blocked event of the batch in `source`, run
    only for a batch holding a blocked event."""
    sql = (
        "INSERT INTO audit_events (workspace_id, id, ts, actor_id, actor_type, action, "
        "resource_type, resource_id, source_ip, outcome, details) "
        f"SELECT workspace_id, '{BLOCK_ID_PREFIX}' || id, ts, COALESCE(user_id, api_key_id), "
        "CASE WHEN user_id IS NOT NULL THEN 'user' WHEN api_key_id IS NOT NULL THEN 'api_key' "
        "ELSE 'system' END, 'block', "
        "CASE WHEN tool IS NOT NULL THEN 'tool' WHEN model IS NOT NULL THEN 'model' "
        "ELSE 'event' END, COALESCE(tool, model, id), caller_ip, 'denied', "
        f"{_details(dialect)} FROM {source} WHERE status = 'blocked' "
        "ON CONFLICT DO NOTHING"
    )
    return [OnlyIf(sql, _STATUS, "blocked")]
