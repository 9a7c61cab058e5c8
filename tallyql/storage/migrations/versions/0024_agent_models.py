"""The `agent_models` rollups: agents by node, provider, model, gateway, BYOK and billing mode
(the agents view filtered by provider, model or gateway read raw events).

Revision ID: 0024_agent_models
Revises: 0022_delta_staged_at (the rollups branch's head)
Create Date: 2026-12-06

`rollup_agent_models_<grain>` are created and filled from the raw events in one scan: the
events are aggregated once into a temporary table by hour and key, and every grain is summed
from that table's far fewer rows. Periods whose raw events retention purged get no rows; no
question read a rollup there before (the new rollup comes after every older one and answers
only what read raw events), so no answer changes.

On PostgreSQL the fold group `agent_models` replaces `agent_modes` and takes `agent_kinds`
from the `agents` group (a rollup joins the widest group whose keys cover its own): the rows
staged in `rollup_delta_agent_modes` are compacted into `agent_modes` and that delta is
dropped; the rows `rollup_delta_agents` holds were staged for `agent_kinds` too, so they are
added to its tables here and stay in the delta for `agents` and `user_kinds`;
`rollup_delta_agent_models` is new. The downgrade does the reverse: the new delta is compacted
into `agent_kinds` and `agent_modes` and dropped, `rollup_delta_agent_modes` is created again,
and `rollup_delta_agents` is compacted into `agents` and `user_kinds` and emptied (the old
grouping would add its rows to `agent_kinds` a second time). Both hold the compaction lock,
so no compaction interleaves. Replicas of the previous version still running stage rows the
new grouping does not fold the old way: upgrade every replica together, as with any rollup
migration. Everything below is a snapshot of `tallyql.storage.rollups` at this revision.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0024_agent_models"
down_revision = "0022_delta_staged_at"
branch_labels = None
depends_on = None

AGENT_MODELS = (
    "agent_id",
    "agent_instance_id",
    "node",
    "kind",
    "status",
    "provider",
    "model",
    "gateway",
    "is_byok",
    "billing_mode",
)
AGENT_KINDS = ("agent_id", "agent_instance_id", "kind", "status")
AGENT_MODES = ("agent_id", "agent_instance_id", "kind", "status", "is_byok", "billing_mode")
AGENTS = ("agent_id", "agent_instance_id", "node", "user_id", "kind", "status")
USER_KINDS = ("user_id", "kind", "status")
SUMS = (
    "requests",
    "errors",
    "blocked",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost_nanousd",
    "latency_sum",
    "latency_count",
    "ttft_sum",
    "ttft_count",
    "request_bytes",
    "response_bytes",
)
EVENT_SUMS = (
    "count(*)",
    "sum(CASE WHEN status = 'error' THEN 1 ELSE 0 END)",
    "sum(CASE WHEN status = 'blocked' THEN 1 ELSE 0 END)",
    "sum(input_tokens)",
    "sum(output_tokens)",
    "sum(cache_read_tokens)",
    "sum(cache_write_tokens)",
    "sum(reasoning_tokens)",
    "sum(cost_nanousd)",
    "sum(COALESCE(latency_ms, 0))",
    "count(latency_ms)",
    "sum(COALESCE(ttft_ms, 0))",
    "count(ttft_ms)",
    "sum(COALESCE(request_bytes, 0))",
    "sum(COALESCE(response_bytes, 0))",
)
"""The writer's sums of each column of SUMS over events."""
FLOATS = {"latency_sum", "ttft_sum"}
FILLFACTOR: dict[str, Any] = {"postgresql_with": {"fillfactor": 70}}
DAY = 86400
WEEK = 7 * DAY
GRAINS: dict[str, tuple[int, int]] = {"h": (3600, 0), "d": (DAY, 0), "w": (WEEK, 4 * DAY)}
"""Each grain's length and origin in epoch seconds (weeks start on Monday, 1970-01-05)."""
TEMP = "_agent_models_backfill"
COMPACTION_LOCK = 0x7A11_7004
"""`storage.locks.Lock.COMPACTION`."""


def _type(dim: str) -> type[sa.types.TypeEngine]:
    return sa.Boolean if dim == "is_byok" else sa.Text


def _key(dim: str) -> str:
    """The key expression of an event column (absent values: '', as the writer keeps)."""
    return dim if dim == "is_byok" else f"COALESCE({dim}, '')"


def period_sql(epoch: str, grain: str) -> str:
    seconds, origin = GRAINS[grain]
    return f"(({epoch} - {origin}) / {seconds} * {seconds} + {origin})"


def _sum_columns() -> list[sa.Column[Any]]:
    return [
        *(sa.Column(c, sa.Float if c in FLOATS else sa.BigInteger, nullable=False) for c in SUMS),
        sa.Column("latency_max", sa.Float),
    ]


def _create_tables() -> None:
    for grain in GRAINS:
        op.create_table(
            f"rollup_agent_models_{grain}",
            sa.Column("workspace_id", sa.Integer, nullable=False),
            sa.Column("period", sa.BigInteger, nullable=False),
            *(sa.Column(d, _type(d), nullable=False) for d in AGENT_MODELS),
            *_sum_columns(),
            sa.PrimaryKeyConstraint("workspace_id", "period", *AGENT_MODELS),
            **FILLFACTOR,
        )


def _create_delta(group: str, dims: tuple[str, ...]) -> None:
    op.create_table(
        f"rollup_delta_{group}",
        sa.Column("workspace_id", sa.Integer, nullable=False),
        sa.Column("period", sa.BigInteger, nullable=False),
        *(sa.Column(d, _type(d), nullable=False) for d in dims),
        *_sum_columns(),
        sa.Column(
            "staged_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")
        ),
    )


def compact_sql(delta: str, table: str, dims: tuple[str, ...], grain: str) -> str:
    """PostgreSQL: add a sum delta table's staged hour rows to one of its rollup tables."""
    period = period_sql("period", grain)
    keys = ", ".join(("workspace_id", "period", *dims))
    sums = ", ".join(f"sum({c})" for c in SUMS)
    updates = ", ".join(
        [f"{c} = {table}.{c} + excluded.{c}" for c in SUMS]
        + [f"latency_max = GREATEST({table}.latency_max, excluded.latency_max)"]
    )
    return (
        f"INSERT INTO {table} ({keys}, {', '.join(SUMS)}, latency_max) "
        f"SELECT workspace_id, {period}, {', '.join(dims)}, {sums}, max(latency_max) "
        f"FROM {delta} GROUP BY workspace_id, {period}, {', '.join(dims)} "
        f"ORDER BY workspace_id, {period}, {', '.join(dims)} "
        f"ON CONFLICT ({keys}) DO UPDATE SET {updates}"
    )


def backfill(bind: sa.Connection) -> None:
    """Fill `rollup_agent_models_<grain>` at every grain from one scan of the events."""
    postgresql = bind.dialect.name == "postgresql"
    epoch = "floor(date_part('epoch', ts))::bigint" if postgresql else "(ts / 1000000)"
    hour = period_sql(epoch, "h")
    keys = ", ".join(f"{_key(d)} AS {d}" for d in AGENT_MODELS)
    sums = ", ".join(f"{e} AS {c}" for e, c in zip(EVENT_SUMS, SUMS, strict=True))
    group = ", ".join(("workspace_id", hour, *(_key(d) for d in AGENT_MODELS)))
    bind.execute(sa.text(f"DROP TABLE IF EXISTS {TEMP}"))
    bind.execute(
        sa.text(
            f"CREATE TEMP TABLE {TEMP} AS SELECT workspace_id, {hour} AS period, {keys}, "
            f"{sums}, max(latency_ms) AS latency_max FROM events GROUP BY {group}"
        )
    )
    dims = ", ".join(AGENT_MODELS)
    for grain in GRAINS:
        period = period_sql("period", grain)
        bind.execute(
            sa.text(
                f"INSERT INTO rollup_agent_models_{grain} (workspace_id, period, {dims}, "
                f"{', '.join(SUMS)}, latency_max) "
                f"SELECT workspace_id, {period}, {dims}, "
                f"{', '.join(f'sum({c})' for c in SUMS)}, max(latency_max) FROM {TEMP} "
                f"GROUP BY workspace_id, {period}, {dims}"
            )
        )
    bind.execute(sa.text(f"DROP TABLE IF EXISTS {TEMP}"))


def _compact(delta: str, members: tuple[tuple[str, tuple[str, ...]], ...]) -> None:
    """PostgreSQL: add a delta's staged rows to each member rollup at every grain."""
    for name, dims in members:
        for grain in GRAINS:
            op.execute(compact_sql(delta, f"rollup_{name}_{grain}", dims, grain))


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        bind.execute(sa.text(f"SELECT pg_advisory_xact_lock({COMPACTION_LOCK})"))
        _compact("rollup_delta_agents", (("agent_kinds", AGENT_KINDS),))  # rows stay for agents
        _compact("rollup_delta_agent_modes", (("agent_modes", AGENT_MODES),))
        op.drop_table("rollup_delta_agent_modes")
        _create_delta("agent_models", AGENT_MODELS)
    _create_tables()
    backfill(bind)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        bind.execute(sa.text(f"SELECT pg_advisory_xact_lock({COMPACTION_LOCK})"))
        _compact(
            "rollup_delta_agent_models",
            (("agent_kinds", AGENT_KINDS), ("agent_modes", AGENT_MODES)),
        )
        op.drop_table("rollup_delta_agent_models")
        _create_delta("agent_modes", AGENT_MODES)
        _compact("rollup_delta_agents", (("agents", AGENTS), ("user_kinds", USER_KINDS)))
        op.execute("DELETE FROM rollup_delta_agents")
    for grain in GRAINS:
        op.drop_table(f"rollup_agent_models_{grain}")
