"""Rollups, declared as data: a name and the event dimensions each keeps.

Every rollup exists at three grains, hour (`_h`), UTC day (`_d`) and week from Monday 00:00
UTC (`_w`); its period column holds the period's start in epoch seconds. Each row holds
counts, token and cost sums, latency and TTFT sums and counts, the latency maximum and byte
sums. Absent text dimensions are stored as '' and absent integer ones (the HTTP status code)
as -1 (keys cannot be NULL).

Histogram rollups keep log-bucketed latency and TTFT counts (see `tallyql.sketch`), so
percentiles merge across rows: one blob per value and row (`tallyql.histogram`), merged in
Python by `histograms.py`. The small ones serve the common views: none at all (the overview
and plain time series), kind and status, and provider and model; `gateways`, `tools` and
`model_details` are keyed like the sum rollups of those views, `gateway_models` like `gateways`
with provider and model; `base` keys them like the `base` sum rollup, for what none of them keeps.

The coverage rule: `base` (sums and histograms) keeps every low-cardinality dimension
(`LOW_CARDINALITY`), so any question whose dimensions and filters are all among them is answered
from rollups over whole hours, raw events being read only at the window's ragged edges. The
high-cardinality dimensions (`HIGH_CARDINALITY_ROLLUPS`) keep their own rollups, with the few
low-cardinality dimensions they are asked with most; a question pairing one with any other
dimension reads raw events, and explain says which columns no rollup keeps.

Rollups are grouped (`FOLD_GROUPS`): each group's members are fed from one hour aggregate of
the new events by the group's dimensions (see `folds.py`). On PostgreSQL the writer
only appends each batch's aggregates to the group's delta table, which takes no row locks, so
concurrent batches never wait for each other; a background job compacts deltas into the
rollup tables, and queries read both.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Integer,
    LargeBinary,
    Table,
    Text,
    func,
)

from tallyql.storage.dialect import Dialect
from tallyql.storage.tables import EVENT_TOKEN_COLUMNS, metadata

HOUR = 3600
DAY = 86400
WEEK = 7 * DAY
WEEK_ORIGIN = 4 * DAY
"""Weeks start on Monday 00:00 UTC: 1970-01-05, four days after the epoch."""
GRAINS: dict[str, int] = {"h": HOUR, "d": DAY, "w": WEEK}


def grain_period_sql(grain: str, hour_period: str) -> str:
    """SQL: the start (epoch seconds) of the `grain` period holding an hour or day period."""
    if grain == "h":
        return hour_period
    if grain == "d":
        return f"({hour_period} / {DAY} * {DAY})"
    return f"(({hour_period} - {WEEK_ORIGIN}) / {WEEK} * {WEEK} + {WEEK_ORIGIN})"


def grain_start(grain: str, epoch: int) -> int:
    """The start of the `grain` period holding an instant (epoch seconds)."""
    if grain == "w":
        return (epoch - WEEK_ORIGIN) // WEEK * WEEK + WEEK_ORIGIN
    return epoch - epoch % GRAINS[grain]


# Measure columns of every rollup row: (column, SQL over an event row, merge).
SUM_MEASURES: tuple[tuple[str, str], ...] = (
    ("requests", "1"),
    ("errors", "CASE WHEN src.status = 'error' THEN 1 ELSE 0 END"),
    ("blocked", "CASE WHEN src.status = 'blocked' THEN 1 ELSE 0 END"),
    *((c, f"src.{c}") for c in EVENT_TOKEN_COLUMNS),
    ("cost_nanousd", "src.cost_nanousd"),
    ("latency_sum", "COALESCE(src.latency_ms, 0)"),
    ("latency_count", "CASE WHEN src.latency_ms IS NULL THEN 0 ELSE 1 END"),
    ("ttft_sum", "COALESCE(src.ttft_ms, 0)"),
    ("ttft_count", "CASE WHEN src.ttft_ms IS NULL THEN 0 ELSE 1 END"),
    ("request_bytes", "COALESCE(src.request_bytes, 0)"),
    ("response_bytes", "COALESCE(src.response_bytes, 0)"),
)
MAX_MEASURES: tuple[tuple[str, str], ...] = (("latency_max", "src.latency_ms"),)
FLOAT_MEASURES = frozenset({"latency_sum", "ttft_sum", "latency_max"})
HISTOGRAMS = (("latency_n", "latency_bucket"), ("ttft_n", "ttft_bucket"))
"""Per-bucket counts of a staged histogram aggregate: (count column, event bucket column)."""
HISTOGRAM_VALUES = ("latency", "ttft")
"""The histogram blob columns of a histogram rollup row (see `tallyql.histogram`)."""

TAG = "tag"  # the exploded tags dimension: one row per tag ('' for untagged events)
BOOL_DIMS = frozenset({"is_byok"})
INT_DIMS: dict[str, int] = {"status_code": -1}
"""Integer dimensions and the key that stands for an absent value (never a real value)."""


@dataclass(frozen=True)
class Rollup:
    name: str
    dims: tuple[str, ...]
    grains: tuple[str, ...] = ("h", "d", "w")
    histogram: bool = False
    dialects: frozenset[Dialect] = frozenset(Dialect)
    """Where the rollup is kept: its table exists everywhere, but elsewhere no writer fills it
    and no question reads it."""

    def kept_on(self, dialect: Dialect) -> bool:
        return dialect in self.dialects

    def table(self, grain: str) -> str:
        prefix = "histogram" if self.histogram else "rollup"
        return f"{prefix}_{self.name}_{grain}"


MODEL_DIMS: tuple[str, ...] = (
    "provider",
    "model",
    "kind",
    "status",
    "status_code",
    "error_type",
    "request_type",
    "cost_source",
    "is_byok",
    "billing_mode",
)
"""The models view's keys: the `models` sum rollup's and the `model_details` histogram's."""

LOW_CARDINALITY: tuple[str, ...] = (
    *MODEL_DIMS,
    "gateway",
    "protocol",
    "tool",
    "mcp_server",
    "policy_id",
    "policy_name",
    "department",
)
"""Event columns with few values per workspace and hour (tens, not thousands): the keys of the
`base` rollups. Their combinations stay few because they are correlated (a model belongs to one
provider; tool, MCP server and policy are set on tool calls, gateway and protocol mostly on
HTTP requests), so a base row per hour stands for many events; measured in bench/ingest.py and
`rollups_storage` (README)."""

HIGH_CARDINALITY_ROLLUPS: dict[str, tuple[str, ...]] = {
    "user_id": ("user_kinds", "users", "agents"),
    "agent_instance_id": ("agent_kinds", "agents", "agent_modes", "agent_models"),
    "api_key_id": ("gateways",),
    "caller": ("gateways",),
}
"""Where each high-cardinality column is kept, with the low-cardinality ones asked with it most:
users with kind, status, provider and model (`users`); agent instances with agent, node, user,
kind and status (`agents`), with BYOK and billing mode (`agent_modes`), or with node, provider,
model, gateway, BYOK and billing mode (`agent_models`); API keys and callers
with gateway, protocol, kind, status and status code (`gateways`). Sessions and metadata keep
none (raw, or the sessions table)."""

GATEWAY_DIMS: tuple[str, ...] = ("gateway", "protocol", "kind", "status", "status_code")
"""The gateways view's low-cardinality keys (its sum rollup adds callers and API keys)."""

# Smallest first: the planner takes the first rollup that covers a question. Each keeps what a
# view needs and no more (every extra key multiplies rows): e.g. tool-usage questions about
# agent instances or users read `agents` or `users` with a kind filter, not `tools`.
ROLLUPS: tuple[Rollup, ...] = (
    Rollup("totals", ("provider", "kind", "status", "is_byok", "billing_mode")),
    # Who was active, without what they called: distinct users, agents and agent instances and
    # the per-user and per-instance views read a few hundred rows a day here instead of the
    # thousands of `users` and `agents`.
    Rollup("user_kinds", ("user_id", "kind", "status")),
    Rollup("agent_kinds", ("agent_id", "agent_instance_id", "kind", "status")),
    Rollup("models", MODEL_DIMS),
    Rollup(
        "tools", ("tool", "mcp_server", "kind", "status", "error_type", "policy_id", "policy_name")
    ),
    Rollup("tags", (TAG, "provider", "model", "kind", "status")),
    Rollup(
        "gateways",
        ("gateway", "protocol", "caller", "api_key_id", "kind", "status", "status_code"),
    ),
    Rollup("users", ("user_id", "provider", "model", "kind", "status")),
    Rollup("agents", ("agent_id", "agent_instance_id", "node", "user_id", "kind", "status")),
    # Agents by how they are billed (the agents view filtered by BYOK or billing mode).
    Rollup(
        "agent_modes",
        ("agent_id", "agent_instance_id", "kind", "status", "is_byok", "billing_mode"),
    ),
    # Agents by what they called (the agents view filtered by provider, model or gateway: its
    # agents, their instances, runs and nodes). Its own rollup rather than wider keys on
    # `agents`: every question `agents` answers keeps reading its fewer rows. Node, provider,
    # model and gateway add few rows per instance and hour (a pipeline node calls one model, a
    # model belongs to one provider and is mostly reached through one gateway). It also keeps
    # `agent_modes`' keys, so that `agent_modes` (and `agent_kinds`) fold from its aggregate:
    # the writer aggregates each batch once for the three, as many times as before.
    Rollup(
        "agent_models",
        (
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
        ),
    ),
    # Last, so that every question an older rollup covers stays on it (and on its rows for
    # periods whose raw events retention purged: base was filled from the events kept).
    Rollup("base", LOW_CARDINALITY),
)

# Smallest first as well. Between the small ones and `base`, histograms keyed like the sum
# rollups of the gateways, tools and models views (and gateways by model): `base` keeps every
# low-cardinality column, so its rows multiply (departments times gateways times billing
# modes...): on 10M demo events 1,440 a day, against 65 (gateways), 98 (tools), 355 (model
# details) and 396 (gateway models), and a month of P95 by gateway and status merged about
# 35,000 of its blobs in Python (migration 0026_histogram_rollups). Those four are kept on
# PostgreSQL only: there the writer stages one histogram delta for every table and compaction
# merges it later (ingest 28.4k -> 26.4k events/s at 30 days of timestamps), while SQLite's
# writer merges every histogram table in the batch's own transaction: since that merge works
# from the batch's events in Python (histograms.fold_bucket_rows), its step costs about 21
# us/event with the four tables kept here and 41 with all eight (bench/sqlite_writer_steps.py
# --days 30; whole batch about 104 us/event), and SQLite is the embedded database of
# installations far below 10M events, where `base` answers the same questions within their
# targets (bench/query.py --mix on 2M events: worst p95 79 ms).
AT_SCALE = frozenset({Dialect.POSTGRESQL})
HISTOGRAM_ROLLUPS: tuple[Rollup, ...] = (
    Rollup("all", (), histogram=True),
    Rollup("kinds", ("kind", "status"), histogram=True),
    Rollup("models", ("provider", "model"), histogram=True),
    Rollup("gateways", GATEWAY_DIMS, histogram=True, dialects=AT_SCALE),
    Rollup(
        "tools",
        ("tool", "mcp_server", "kind", "status", "error_type", "policy_id", "policy_name"),
        histogram=True,
        dialects=AT_SCALE,
    ),
    Rollup("model_details", MODEL_DIMS, histogram=True, dialects=AT_SCALE),
    Rollup(
        "gateway_models",
        (*GATEWAY_DIMS, "provider", "model"),
        histogram=True,
        dialects=AT_SCALE,
    ),
    Rollup("base", LOW_CARDINALITY, histogram=True),
)


def _dim_type(name: str) -> type[Boolean] | type[Integer] | type[Text]:
    if name in BOOL_DIMS:
        return Boolean
    if name in INT_DIMS:
        return Integer
    return Text


def _dim_column(name: str) -> Column:
    return Column(name, _dim_type(name), primary_key=True)


def _table(rollup: Rollup, grain: str) -> Table:
    if rollup.histogram:
        measures = [Column(c, LargeBinary) for c in HISTOGRAM_VALUES]
    else:
        measures = [
            *(
                Column(c, Float if c in FLOAT_MEASURES else BigInteger, nullable=False)
                for c, _ in SUM_MEASURES
            ),
            *(Column(c, Float) for c, _ in MAX_MEASURES),
        ]
    return Table(
        rollup.table(grain),
        metadata,
        Column("workspace_id", Integer, primary_key=True),
        Column("period", BigInteger, primary_key=True),
        *(_dim_column(d) for d in rollup.dims),
        *measures,
    )


ROLLUP_TABLES: dict[str, Table] = {
    r.table(g): _table(r, g) for r in (*ROLLUPS, *HISTOGRAM_ROLLUPS) for g in r.grains
}


@dataclass(frozen=True)
class FoldGroup:
    """Rollups fed from one hour aggregate of the new events by `dims` (see `folds`),
    and on PostgreSQL staged together in one delta table until they are compacted."""

    name: str
    dims: tuple[str, ...]
    members: tuple[Rollup, ...]
    histogram: bool = False

    @property
    def delta_table(self) -> str:
        return f"rollup_delta_{self.name}"


def _group_rollups() -> tuple[FoldGroup, ...]:
    """Each rollup joins the widest rollup whose dimensions cover its own (the tag rollup,
    which counts an event once per tag, only covers tag rollups); the histogram rollups are all
    small and share one group by the union of their dimensions."""
    groups: list[tuple[tuple[str, ...], list[Rollup]]] = []
    for rollup in sorted(ROLLUPS, key=lambda r: -len(r.dims)):
        for dims, members in groups:
            if set(rollup.dims) <= set(dims) and (TAG in rollup.dims) == (TAG in dims):
                members.append(rollup)
                break
        else:
            groups.append((rollup.dims, [rollup]))
    histogram_dims = tuple(dict.fromkeys(d for r in HISTOGRAM_ROLLUPS for d in r.dims))
    return (
        *(FoldGroup(members[0].name, dims, tuple(members)) for dims, members in groups),
        FoldGroup("histograms", histogram_dims, HISTOGRAM_ROLLUPS, histogram=True),
    )


FOLD_GROUPS: tuple[FoldGroup, ...] = _group_rollups()
GROUP_OF: dict[str, FoldGroup] = {
    r.table(g): group for group in FOLD_GROUPS for r in group.members for g in r.grains
}
"""Each rollup table's fold group."""


def _delta(group: FoldGroup) -> Table:
    if group.histogram:  # one row per batch, hour and key, a blob per value
        measures = [Column(c, LargeBinary) for c in HISTOGRAM_VALUES]
    else:
        measures = [
            *(
                Column(c, Float if c in FLOAT_MEASURES else BigInteger, nullable=False)
                for c, _ in SUM_MEASURES
            ),
            *(Column(c, Float) for c, _ in MAX_MEASURES),
        ]
    dims = [Column(d, _dim_type(d), nullable=False) for d in group.dims]
    return Table(
        group.delta_table,
        metadata,
        Column("workspace_id", Integer, nullable=False),
        Column("period", BigInteger, nullable=False),
        *dims,
        *measures,
        # when the row was staged (its transaction's start): how long compaction keeps rows
        # waiting, for health alert rules (migration 0022_delta_staged_at); no INSERT names it
        Column("staged_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


DELTA_TABLES: dict[str, Table] = {g.delta_table: _delta(g) for g in FOLD_GROUPS}
"""PostgreSQL only: each fold group's hour aggregates of committed batches not yet compacted
into its rollup tables. Queries read a rollup table together with its group's delta."""
