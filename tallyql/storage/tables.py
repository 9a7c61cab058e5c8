"""Table layouts. The one place that knows them; migrations create exactly these.

Every key starts with `workspace_id`, so the tables can be distributed by workspace.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Computed,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    Table,
    Text,
)

from tallyql.storage.types import JsonValue, TagList, UtcDateTime

metadata = MetaData()

workspaces = Table(
    "workspaces",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", Text, nullable=False, unique=True),
    Column("created_at", UtcDateTime(), nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Text, primary_key=True),  # public part of the key
    Column("workspace_id", Integer, ForeignKey("workspaces.id"), nullable=False, index=True),
    Column("name", Text, nullable=False),
    Column("role", Text, nullable=False),
    Column("secret_hash", Text, nullable=False),  # sha256 of the secret, hex
    Column("created_at", UtcDateTime(), nullable=False),
    Column("revoked_at", UtcDateTime(), nullable=True),
)

# The wide, append-only event table. On PostgreSQL it is partitioned by day on `ts`; the
# idempotency key (workspace_id, id) is then enforced by `event_keys`.
EVENT_TOKEN_COLUMNS = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
)

events = Table(
    "events",
    metadata,
    Column("workspace_id", Integer, primary_key=True),
    Column("id", Text, primary_key=True),
    Column("ts", UtcDateTime(), nullable=False),
    Column("kind", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("status_code", Integer),
    Column("error_type", Text),
    Column("error_message", Text),
    Column("policy_id", Text),
    Column("policy_name", Text),
    Column("policy_description", Text),
    Column("user_id", Text),
    Column("api_key_id", Text),
    Column("caller_ip", Text),
    Column("caller", Text),  # api_key_id, else "ip:" + caller_ip
    Column("agent_id", Text),
    Column("agent_instance_id", Text),
    Column("session_id", Text),
    Column("trace_id", Text),
    Column("parent_id", Text),
    Column("run_id", Text),
    Column("node", Text),
    Column("provider", Text),
    Column("model", Text),
    Column("tool", Text),
    Column("mcp_server", Text),
    Column("gateway", Text),
    Column("protocol", Text),
    Column("request_type", Text),
    Column("billing_mode", Text),
    Column("is_byok", Boolean, nullable=False),
    *(Column(name, BigInteger, nullable=False) for name in EVENT_TOKEN_COLUMNS),
    Column("cost_nanousd", BigInteger, nullable=False),
    Column("cost_source", Text, nullable=False),
    Column("latency_ms", Float),
    Column("ttft_ms", Float),
    Column("latency_bucket", SmallInteger),
    Column("ttft_bucket", SmallInteger),
    Column("request_bytes", BigInteger),
    Column("response_bytes", BigInteger),
    Column("has_payload", Boolean, nullable=False),
    Column("tags", TagList(), nullable=False),
    Column("metadata", JsonValue(), nullable=False),
    Column("received_at", UtcDateTime(), nullable=False),
    # the user's department when the event was stored (the writer reads it from `users`)
    Column("department", Text),
)
Index("ix_events_ws_ts", events.c.workspace_id, events.c.ts, events.c.id)
Index("ix_events_ws_session", events.c.workspace_id, events.c.session_id, events.c.ts)
# PostgreSQL also has ix_events_ws_ts_unusual: (workspace_id, ts, id) of the events that did not
# succeed or carry an HTTP error code (migration 0025_unusual_events_index), for the request log
# filtered by a status or status code.

EVENT_COLUMNS: tuple[str, ...] = tuple(c.name for c in events.columns)

# PostgreSQL only: the idempotency keys of partitioned events (see migrations).
event_keys = Table(
    "event_keys",
    metadata,
    Column("workspace_id", Integer, primary_key=True),
    Column("event_id", Text, primary_key=True),
    Column("ts", UtcDateTime(), nullable=False),
)

payloads = Table(
    "payloads",
    metadata,
    Column("workspace_id", Integer, primary_key=True),
    Column("event_id", Text, primary_key=True),
    Column("ts", UtcDateTime(), nullable=False),
    Column("request", JsonValue()),
    Column("response", JsonValue()),
)

users = Table(
    "users",
    metadata,
    Column("workspace_id", Integer, primary_key=True),
    Column("id", Text, primary_key=True),
    Column("email", Text),
    Column("display_name", Text),
    Column("department", Text),  # cost centre: at most one; events keep the one of their time
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)

groups = Table(
    "groups",
    metadata,
    Column("workspace_id", Integer, primary_key=True),
    Column("name", Text, primary_key=True),
    Column("description", Text),
    Column("created_at", UtcDateTime(), nullable=False),
)

group_members = Table(
    "group_members",
    metadata,
    Column("workspace_id", Integer, primary_key=True),
    Column("group_name", Text, primary_key=True),
    Column("user_id", Text, primary_key=True),
)
Index("ix_group_members_user", group_members.c.workspace_id, group_members.c.user_id)

SESSION_SUM_COLUMNS = (
    "requests",
    "errors",
    *EVENT_TOKEN_COLUMNS,
    "cost_nanousd",
    "latency_ms_sum",
)

sessions = Table(
    "sessions",
    metadata,
    Column("workspace_id", Integer, primary_key=True),
    Column("id", Text, primary_key=True),
    Column("user_id", Text),
    Column("agent_id", Text),
    Column("first_ts", UtcDateTime(), nullable=False),
    Column("last_ts", UtcDateTime(), nullable=False),
    Column("requests", BigInteger, nullable=False),
    Column("errors", BigInteger, nullable=False),
    *(Column(name, BigInteger, nullable=False) for name in EVENT_TOKEN_COLUMNS),
    Column("cost_nanousd", BigInteger, nullable=False),
    Column("latency_ms_sum", Float, nullable=False),
    # last_ts - first_ts in whole microseconds, computed by the database (migration 0010)
    Column("duration_us", BigInteger, Computed("last_ts - first_ts")),
)
Index("ix_sessions_ws_last", sessions.c.workspace_id, sessions.c.last_ts)

SESSION_MODEL_SUM_COLUMNS = (
    "requests",
    "errors",
    *EVENT_TOKEN_COLUMNS,
    "cost_nanousd",
    "latency_ms_sum",
    "latency_count",
)

session_models = Table(
    "session_models",
    metadata,
    Column("workspace_id", Integer, primary_key=True),
    Column("session_id", Text, primary_key=True),
    Column("provider", Text, primary_key=True),  # '' when absent
    Column("model", Text, primary_key=True),  # '' when absent
    Column("requests", BigInteger, nullable=False),
    Column("errors", BigInteger, nullable=False),
    *(Column(name, BigInteger, nullable=False) for name in EVENT_TOKEN_COLUMNS),
    Column("cost_nanousd", BigInteger, nullable=False),
    Column("latency_ms_sum", Float, nullable=False),
    Column("latency_count", BigInteger, nullable=False),
)

session_day_versions = Table(
    "session_day_versions",
    metadata,
    Column("workspace_id", Integer, primary_key=True),
    Column("day", Integer, primary_key=True),  # UTC days since the epoch
    Column("version", BigInteger, nullable=False),  # storage/rollups/session_versions.py
)

# Each workspace's data version: the sum of its rows' versions (storage/data_versions.py).
data_versions = Table(
    "data_versions",
    metadata,
    Column("workspace_id", Integer, primary_key=True),
    Column("slot", Integer, primary_key=True),
    Column("version", BigInteger, nullable=False),
)

# Chargeback statements of closed periods, as first issued and as restated after repricing
# (costs/statements.py): a closed period's statement never changes silently.
statement_snapshots = Table(
    "statement_snapshots",
    metadata,
    Column("workspace_id", Integer, primary_key=True),
    Column("period", Text, primary_key=True),  # month | quarter
    Column("period_start", Text, primary_key=True),  # the local first day, YYYY-MM-DD
    Column("timezone", Text, primary_key=True),  # the IANA zone the period is counted in
    Column("version", Integer, primary_key=True),  # 1 when issued, +1 per restatement
    Column("issued_at", UtcDateTime(), nullable=False),
    Column("reason", Text),  # why this version replaced the one before; null for the first
    Column("body", JsonValue(), nullable=False),
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("workspace_id", Integer, primary_key=True),
    Column("id", Text, primary_key=True),
    Column("ts", UtcDateTime(), nullable=False),
    Column("actor_id", Text),
    Column("actor_type", Text, nullable=False),  # user | api_key | system
    Column("action", Text, nullable=False),
    Column("resource_type", Text, nullable=False),
    Column("resource_id", Text),
    Column("source_ip", Text),
    Column("outcome", Text, nullable=False),  # success | failure | denied
    Column("details", JsonValue(), nullable=False),
)
Index("ix_audit_ws_ts", audit_events.c.workspace_id, audit_events.c.ts, audit_events.c.id)

# Coding agents' OTLP metrics (POST /v1/metrics): one row per series (a metric name with one
# set of attributes, its resource's included) and one per data point. `id` is a hash of what
# identifies the series, so replicas and retries agree on it without a lookup.
metric_series = Table(
    "metric_series",
    metadata,
    Column("workspace_id", Integer, primary_key=True),
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("kind", Text, nullable=False),  # sum | gauge | histogram
    Column("unit", Text, nullable=False),
    Column("monotonic", Boolean, nullable=False),
    Column("attributes", JsonValue(), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
)
Index("ix_metric_series_name", metric_series.c.workspace_id, metric_series.c.name)

# A sum's `value` is its delta since the series' previous point (a cumulative point minus the
# one before it; a delta point as sent), a gauge's its reading, a histogram's the delta of its
# sum of observations (`count` and `buckets` the deltas of its counts). `raw_*` keep a
# cumulative point as sent, for the next point's delta.
metric_points = Table(
    "metric_points",
    metadata,
    Column("workspace_id", Integer, primary_key=True),
    Column("series_id", Text, primary_key=True),
    Column("start_ns", BigInteger, primary_key=True),
    Column("time_ns", BigInteger, primary_key=True),
    Column("ts", UtcDateTime(), nullable=False),
    Column("value", Float),
    Column("count", BigInteger),
    Column("buckets", JsonValue()),
    Column("bounds", JsonValue()),
    Column("min", Float),
    Column("max", Float),
    Column("raw_value", Float),
    Column("raw_count", BigInteger),
    Column("raw_buckets", JsonValue()),
)
Index("ix_metric_points_ts", metric_points.c.workspace_id, metric_points.c.ts)
