"""The `base` rollups: sums and latency/TTFT histograms keyed by every low-cardinality dimension;
and `agent_modes`, agents by BYOK and billing mode.

Revision ID: 0020_base_rollups
Revises: 0013_departments
Create Date: 2026-12-06

`rollup_base_<grain>`, `histogram_base_<grain>` and `rollup_agent_modes_<grain>` are created and
filled from the raw events a week at a time (`backfill`): per week, set-based statements
aggregate the week's events (for `base`, numbered by their distinct keys first) into the hour,
day and week rows of every table (a week holds whole days, so every row is written once,
complete). Memory and temporary space stay those of a week of events. An earlier version
aggregated all events at once by the union of the base and agent keys and both buckets, which
left about a row per event to re-aggregate nine times by twenty wide keys: bench/backfill.py,
2,000,000 demo events over 30 days on PostgreSQL, 140 s (3.3 GB of temporary files) against 26 s
now; on SQLite, 90 s and 3.7 GB peak RSS (its writer keeps temporary tables in memory) against
35 s and 0.5 GB. Periods whose raw events retention purged get no rows; no question read a
rollup there before (the new rollups come last and answer only what read raw events), so no
answer changes.

On PostgreSQL the `base` fold group replaces the `models` and `tools` groups (both keep a
subset of its keys): their staged delta rows are first compacted into their rollup tables and
`rollup_delta_base` replaces their delta tables (`rollup_delta_agent_modes` is new); the
histogram delta is compacted likewise (its blobs merged here) and recreated with the base keys.
Everything below is a snapshot of `tallyql.storage.rollups` at this revision, deliberately:
the backfill does not call the runtime rebuild (`storage/rollups/rebuild.py`) nor import the
declarations and folds it runs, because those follow today's rollups (a later revision adds a
rollup, and a rebuild then fills a table that does not exist yet at this revision), while a
migration must do the same whenever an operator runs it. tests/test_base_rollups_migration.py
holds this copy to what the writer keeps.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

import numpy as np
import sqlalchemy as sa
from alembic import op

revision = "0020_base_rollups"
down_revision = "0013_departments"
branch_labels = None
depends_on = None

BASE: tuple[str, ...] = (
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
    "gateway",
    "protocol",
    "tool",
    "mcp_server",
    "policy_id",
    "policy_name",
    "department",
)
AGENT_MODES = ("agent_id", "agent_instance_id", "kind", "status", "is_byok", "billing_mode")
MODELS = BASE[:10]
TOTALS = ("provider", "kind", "status", "is_byok", "billing_mode")
TOOLS = ("tool", "mcp_server", "kind", "status", "error_type", "policy_id", "policy_name")
OLD_GROUPS: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "models": (("models", MODELS), ("totals", TOTALS)),
    "tools": (("tools", TOOLS),),
}
"""PostgreSQL, before this revision: each sum delta table and the rollups it feeds."""
NEW_GROUP = (("models", MODELS), ("totals", TOTALS), ("tools", TOOLS))
"""PostgreSQL, at this revision: the rollups `rollup_delta_base` feeds, besides base."""
HISTOGRAMS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("all", ()),
    ("kinds", ("kind", "status")),
    ("models", ("provider", "model")),
)
OLD_HISTOGRAM_DIMS = ("kind", "status", "provider", "model")
NEW_HISTOGRAM_DIMS = tuple(dict.fromkeys((*OLD_HISTOGRAM_DIMS, *BASE)))
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
WEEK_ORIGIN = 4 * DAY  # 1970-01-05, a Monday
GRAINS: dict[str, tuple[int, int]] = {"h": (3600, 0), "d": (DAY, 0), "w": (WEEK, WEEK_ORIGIN)}
"""Each grain's length and origin in epoch seconds."""
HOURS = "_base_backfill_hours"
KEYS = "_base_backfill_keys"
EVENTS = "_base_backfill_events"
CHUNK = 5_000
ENTRY = 10  # a blob entry: a big-endian int16 bucket and, after all buckets, a uint64 count


def _type(dim: str) -> type[sa.types.TypeEngine]:
    if dim == "is_byok":
        return sa.Boolean
    return sa.Integer if dim == "status_code" else sa.Text


def _key(dim: str, alias: str = "") -> str:
    """The key expression of an event column (absent values: '' and -1, as the writer keeps)."""
    if dim == "is_byok":
        return f"{alias}{dim}"
    return f"COALESCE({alias}{dim}, -1)" if dim == "status_code" else f"COALESCE({alias}{dim}, '')"


def period_sql(epoch: str, grain: str) -> str:
    seconds, origin = GRAINS[grain]
    return f"(({epoch} - {origin}) / {seconds} * {seconds} + {origin})"


def _sum_columns() -> list[sa.Column[Any]]:
    return [
        *(sa.Column(c, sa.Float if c in FLOATS else sa.BigInteger, nullable=False) for c in SUMS),
        sa.Column("latency_max", sa.Float),
    ]


def _create_sum_table(table: str, dims: tuple[str, ...]) -> None:
    op.create_table(
        table,
        sa.Column("workspace_id", sa.Integer, nullable=False),
        sa.Column("period", sa.BigInteger, nullable=False),
        *(sa.Column(d, _type(d), nullable=False) for d in dims),
        *_sum_columns(),
        sa.PrimaryKeyConstraint("workspace_id", "period", *dims),
        **FILLFACTOR,
    )


def _create_histogram_table(table: str, dims: tuple[str, ...]) -> None:
    op.create_table(
        table,
        sa.Column("workspace_id", sa.Integer, nullable=False),
        sa.Column("period", sa.BigInteger, nullable=False),
        *(sa.Column(d, _type(d), nullable=False) for d in dims),
        sa.Column("latency", sa.LargeBinary),
        sa.Column("ttft", sa.LargeBinary),
        sa.PrimaryKeyConstraint("workspace_id", "period", *dims),
    )


def _create_sum_delta(group: str, dims: tuple[str, ...]) -> None:
    op.create_table(
        f"rollup_delta_{group}",
        sa.Column("workspace_id", sa.Integer, nullable=False),
        sa.Column("period", sa.BigInteger, nullable=False),
        *(sa.Column(d, _type(d), nullable=False) for d in dims),
        *_sum_columns(),
    )


def _create_histogram_delta(dims: tuple[str, ...]) -> None:
    op.create_table(
        "rollup_delta_histograms",
        sa.Column("workspace_id", sa.Integer, nullable=False),
        sa.Column("period", sa.BigInteger, nullable=False),
        *(sa.Column(d, _type(d), nullable=False) for d in dims),
        sa.Column("latency", sa.LargeBinary),
        sa.Column("ttft", sa.LargeBinary),
    )


def compact_sql(group: str, table: str, dims: tuple[str, ...], grain: str) -> str:
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
        f"FROM rollup_delta_{group} GROUP BY workspace_id, {period}, {', '.join(dims)} "
        f"ON CONFLICT ({keys}) DO UPDATE SET {updates}"
    )


def _decode(blob: bytes | None) -> dict[int, int]:
    if not blob:
        return {}
    n = len(blob) // ENTRY
    buckets = np.frombuffer(blob[: 2 * n], ">i2")
    counts = np.frombuffer(blob[2 * n :], ">u8")
    return dict(zip(buckets.tolist(), counts.tolist(), strict=True))


def _encode(counts: dict[int, int]) -> bytes | None:
    pairs = sorted((b, c) for b, c in counts.items() if c > 0)
    if not pairs:
        return None
    return (
        np.asarray([b for b, _ in pairs], ">i2").tobytes()
        + np.asarray([c for _, c in pairs], ">u8").tobytes()
    )


def _merge(blobs: Iterable[bytes | None]) -> bytes | None:
    total: dict[int, int] = {}
    for blob in blobs:
        for bucket, count in _decode(blob).items():
            total[bucket] = total.get(bucket, 0) + count
    return _encode(total)


def _compact_histogram_delta(bind: sa.Connection, delta_dims: tuple[str, ...]) -> None:
    """PostgreSQL: merge the staged histogram delta rows (keyed by `delta_dims`) into the
    histogram tables of `HISTOGRAMS` at every grain, then empty the delta."""
    rows = bind.execute(
        sa.text(
            f"SELECT workspace_id, period, {', '.join(delta_dims)}, latency, ttft "
            "FROM rollup_delta_histograms"
        )
    ).all()
    for name, dims in HISTOGRAMS:
        at = [2 + delta_dims.index(d) for d in dims]
        for grain in GRAINS:
            seconds, origin = GRAINS[grain]
            merged: dict[tuple[Any, ...], list[list[bytes | None]]] = {}
            for r in rows:
                period = (r[1] - origin) // seconds * seconds + origin
                key = (r[0], period, *(r[i] for i in at))
                blobs = merged.setdefault(key, [[], []])
                blobs[0].append(r[-2])
                blobs[1].append(r[-1])
            table = f"histogram_{name}_{grain}"
            keys = ("workspace_id", "period", *dims)
            match = " AND ".join(f"{k} = :{k}" for k in keys)
            for key, (latency, ttft) in sorted(merged.items()):
                params = dict(zip(keys, key, strict=True))
                stored = bind.execute(
                    sa.text(f"SELECT latency, ttft FROM {table} WHERE {match}"), params
                ).first()
                if stored is not None:
                    latency.append(stored[0])
                    ttft.append(stored[1])
                bind.execute(
                    sa.text(
                        f"INSERT INTO {table} ({', '.join(keys)}, latency, ttft) "
                        f"VALUES ({', '.join(':' + k for k in keys)}, :latency, :ttft) "
                        f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET latency = "
                        "excluded.latency, ttft = excluded.ttft"
                    ),
                    {**params, "latency": _merge(latency), "ttft": _merge(ttft)},
                )
    bind.execute(sa.text("DELETE FROM rollup_delta_histograms"))


PLANNER = {
    "enable_mergejoin": "off",
    "enable_nestloop": "off",
    "jit": "off",
    "work_mem": "64MB",
}
"""PostgreSQL, for the backfill's statements: the join of a week's events to its distinct
base keys (1,238 in a week of the demo's) on seventeen columns is estimated at one row and was
planned as a merge join that sorted the events on disk (2.2 s a week of 70,000 events against
0.5 s hashed); JIT compiled the same statements for longer than they ran; a week's aggregates
fit in 64 MB instead of spilling to temporary files."""


def _epoch(dialect: str) -> str:
    """An event's epoch second, as the writer computes its hour."""
    if dialect == "postgresql":
        return "floor(date_part('epoch', ts))::bigint"
    return "(ts / 1000000)"


def _batch_where(dialect: str, workspaces: Sequence[int], lower: bool, upper: bool) -> str:
    """The events of one batch: ts in [:t0, :t1), each bound only when given. SQLite names the
    workspaces, so that each one's range is read from its (workspace_id, ts) index rather than
    the whole table; PostgreSQL's day partitions are pruned to the batch's days."""
    where = []
    if dialect != "postgresql":
        where.append(f"workspace_id IN ({', '.join(str(int(w)) for w in workspaces) or 'NULL'})")
    if lower:
        where.append("ts >= :t0")
    if upper:
        where.append("ts < :t1")
    return " AND ".join(where) or "TRUE"


def hour_sums_sql(dims: tuple[str, ...], epoch: str, where: str) -> str:
    """The writer's hour rows of a sum rollup keyed by `dims`, over the batch's events."""
    hour = period_sql(epoch, "h")
    keys = ", ".join(f"{_key(d)} AS {d}" for d in dims)
    sums = ", ".join(
        f"{e} AS {c}" if c in FLOATS else f"CAST({e} AS BIGINT) AS {c}"
        for e, c in zip(EVENT_SUMS, SUMS, strict=True)
    )
    group = ", ".join(("workspace_id", hour, *(_key(d) for d in dims)))
    return (
        f"CREATE TEMP TABLE {HOURS} AS SELECT workspace_id, {hour} AS period, {keys}, {sums}, "
        f"max(latency_ms) AS latency_max FROM events WHERE {where} GROUP BY {group}"
    )


def grain_sums_sql(name: str, dims: tuple[str, ...], grain: str) -> str:
    """`rollup_<name>_<grain>`'s rows of the batch, summed from its hour rows."""
    keys = ", ".join(("workspace_id", "period", *dims))
    columns = f"{keys}, {', '.join(SUMS)}, latency_max"
    if grain == "h":
        return f"INSERT INTO rollup_{name}_h ({columns}) SELECT {columns} FROM {HOURS}"
    period = period_sql("period", grain)
    sums = ", ".join(f"sum({c})" if c in FLOATS else f"CAST(sum({c}) AS BIGINT)" for c in SUMS)
    return (
        f"INSERT INTO rollup_{name}_{grain} ({columns}) "
        f"SELECT workspace_id, {period}, {', '.join(dims)}, {sums}, max(latency_max) "
        f"FROM {HOURS} GROUP BY workspace_id, {period}, {', '.join(dims)}"
    )


EVENT_COLUMNS = (
    "status",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost_nanousd",
    "latency_ms",
    "ttft_ms",
    "request_bytes",
    "response_bytes",
    "latency_bucket",
    "ttft_bucket",
)
"""The event columns the base sums and histograms read (EVENT_SUMS, the buckets)."""


def base_keys_sql(where: str) -> str:
    """The batch's distinct base keys, numbered: every later aggregate of the batch groups by
    that number instead of the seventeen keys (about a thousand distinct keys a week stand for
    tens of thousands of events, and hashing or sorting them was most of the backfill)."""
    keys = ", ".join(f"{_key(d)} AS {d}" for d in BASE)
    return (
        f"CREATE TEMP TABLE {KEYS} AS SELECT row_number() OVER () AS k, {', '.join(BASE)} "
        f"FROM (SELECT DISTINCT {keys} FROM events WHERE {where}) AS d"
    )


def base_events_sql(epoch: str, where: str) -> str:
    """The batch's events as (workspace, hour, base key number, the columns the base rollups
    read)."""
    on = " AND ".join(f"kd.{d} = {_key(d, 'e.')}" for d in BASE)
    return (
        f"CREATE TEMP TABLE {EVENTS} AS SELECT e.workspace_id, {period_sql(epoch, 'h')} AS "
        f"period, kd.k, {', '.join(f'e.{c}' for c in EVENT_COLUMNS)} "
        f"FROM events AS e JOIN {KEYS} AS kd ON {on} WHERE {where}"
    )


def base_sums_sql(grain: str) -> str:
    """`rollup_base_<grain>`'s rows of the batch."""
    period = period_sql("period", grain)
    sums = ", ".join(
        f"{e} AS {c}" if c in FLOATS else f"CAST({e} AS BIGINT) AS {c}"
        for e, c in zip(EVENT_SUMS, SUMS, strict=True)
    )
    return (
        f"INSERT INTO rollup_base_{grain} (workspace_id, period, {', '.join(BASE)}, "
        f"{', '.join(SUMS)}, latency_max) SELECT x.workspace_id, x.period, "
        f"{', '.join(f'kd.{d}' for d in BASE)}, {', '.join(f'x.{c}' for c in SUMS)}, "
        f"x.latency_max FROM (SELECT workspace_id, {period} AS period, k, {sums}, "
        f"max(latency_ms) AS latency_max FROM {EVENTS} GROUP BY workspace_id, {period}, k) "
        f"AS x JOIN {KEYS} AS kd ON kd.k = x.k"
    )


def base_buckets_sql(grain: str) -> str:
    """Per workspace, `grain` period, base key number and bucket of the batch, the latency and
    TTFT counts (the writer's histogram aggregate)."""
    period = period_sql("period", grain)
    per_value = " UNION ALL ".join(
        f"SELECT workspace_id, period, k, {column} AS bucket, "
        f"{int(value == 'latency')} AS latency_n, {int(value == 'ttft')} AS ttft_n "
        f"FROM {EVENTS} WHERE {column} IS NOT NULL"
        for value, column in (("latency", "latency_bucket"), ("ttft", "ttft_bucket"))
    )
    return (
        f"SELECT workspace_id, {period} AS period, k, bucket, "
        f"sum(latency_n) AS latency_n, sum(ttft_n) AS ttft_n FROM ({per_value}) AS v "
        f"GROUP BY workspace_id, {period}, k, bucket"
    )


def histogram_sql_postgresql(grain: str) -> str:
    """PostgreSQL: the batch's rows of `histogram_base_<grain>`, the blobs built by the
    database (big-endian int2send and int8send, the encoding of `tallyql.histogram`)."""
    blobs = ", ".join(
        f"string_agg(int2send(b.bucket::int2), ''::bytea ORDER BY b.bucket) "
        f"FILTER (WHERE b.{c} > 0) || string_agg(int8send(b.{c}::int8), ''::bytea "
        f"ORDER BY b.bucket) FILTER (WHERE b.{c} > 0) AS {value}"
        for c, value in (("latency_n", "latency"), ("ttft_n", "ttft"))
    )
    return (
        f"INSERT INTO histogram_base_{grain} (workspace_id, period, {', '.join(BASE)}, "
        f"latency, ttft) SELECT x.workspace_id, x.period, {', '.join(f'kd.{d}' for d in BASE)}, "
        f"x.latency, x.ttft FROM (SELECT workspace_id, period, k, {blobs} "
        f"FROM ({base_buckets_sql(grain)}) AS b GROUP BY workspace_id, period, k) AS x "
        f"JOIN {KEYS} AS kd ON kd.k = x.k"
    )


def _histogram_rows(
    rows: Sequence[Sequence[Any]], dims: dict[int, tuple[Any, ...]]
) -> list[dict[str, Any]]:
    """SQLite: `base_buckets_sql` rows ordered by workspace, period, key number and bucket, as
    rows of blobs (`dims`: each key number's base keys). The blobs are cut from one encoding of
    all the rows' buckets and counts rather than encoded key by key."""
    names = ("workspace_id", "period", *BASE)
    keys = [(r[0], r[1], r[2]) for r in rows]
    starts = [i for i in range(len(keys)) if i == 0 or keys[i] != keys[i - 1]]
    bounds = np.asarray([*starts, len(keys)], np.int64)
    buckets = np.fromiter((r[3] for r in rows), np.int16, len(rows))
    out: list[dict[str, Any]] = [
        dict(zip(names, (keys[s][0], keys[s][1], *dims[keys[s][2]]), strict=True)) for s in starts
    ]
    for offset, value in enumerate(("latency", "ttft")):
        counts = np.fromiter((r[4 + offset] for r in rows), np.uint64, len(rows))
        kept = counts > 0
        bucket_bytes = buckets[kept].astype(">i2").tobytes()
        count_bytes = counts[kept].astype(">u8").tobytes()
        at = np.concatenate(([0], np.cumsum(kept)))[bounds].tolist()  # kept entries before
        for row, s, e in zip(out, at[:-1], at[1:], strict=True):
            row[value] = bucket_bytes[2 * s : 2 * e] + count_bytes[8 * s : 8 * e] if e > s else None
    return out


def _workspaces(bind: sa.Connection) -> list[int]:
    """The workspaces with events, each found by one probe of the workspace index."""
    return list(
        bind.execute(
            sa.text(
                "WITH RECURSIVE w(id) AS (SELECT min(workspace_id) FROM events UNION ALL "
                "SELECT (SELECT min(workspace_id) FROM events WHERE workspace_id > w.id) "
                "FROM w WHERE w.id IS NOT NULL) SELECT id FROM w WHERE id IS NOT NULL"
            )
        ).scalars()
    )


def _batches(
    bind: sa.Connection, dialect: str, workspaces: Sequence[int]
) -> list[tuple[int | None, int | None]]:
    """The backfill's batches, [start, end) in epoch seconds: the weeks from the first event's
    to the last's, the first open below and the last open above, so that no event falls outside
    (nor, before 1970-01-12, where the periods' integer division truncates rather than floors,
    into a batch other than its periods')."""
    if not workspaces:
        return []
    epoch = _epoch(dialect)
    ends = []
    for order in ("ASC", "DESC"):
        sql = sa.text(
            f"SELECT {epoch} FROM events WHERE workspace_id = :ws ORDER BY ts {order} LIMIT 1"
        )
        ends.append([bind.execute(sql, {"ws": ws}).scalar_one() for ws in workspaces])
    first, last = min(ends[0]), max(ends[1])
    week = (first - WEEK_ORIGIN) // WEEK * WEEK + WEEK_ORIGIN
    cuts = list(range(max(week + WEEK, WEEK_ORIGIN + WEEK), last + 1, WEEK))
    edges: list[int | None] = [None, *cuts, None]
    return list(pairwise(edges))


def _bound(dialect: str, epoch: int) -> Any:
    """A batch edge as a stored `ts` (timestamptz, or SQLite's epoch microseconds)."""
    if dialect == "postgresql":
        return datetime.fromtimestamp(epoch, UTC)
    return epoch * 1_000_000


def _configure(bind: sa.Connection, settings: dict[str, str]) -> None:
    """PostgreSQL: set these settings until the transaction ends."""
    for name, value in settings.items():
        bind.execute(sa.text("SELECT set_config(:n, :v, true)"), {"n": name, "v": value})


def backfill(bind: sa.Connection) -> None:
    """Fill every new table at every grain from the raw events, a week at a time (a week holds
    whole days, so each batch writes its rows complete, once). Per week: the agent rollup's hour
    rows are aggregated into a temporary table and its hour, day and week rows summed from
    them; the week's distinct base keys are numbered, its events copied with their key's number
    and the columns the base rollups read, and every base sum and histogram row of every grain
    aggregated from that copy by number, the keys joined back on output. Memory and temporary
    space stay those of a week (SQLite's writer keeps temporary tables in memory)."""
    dialect = bind.dialect.name
    epoch = _epoch(dialect)
    workspaces = _workspaces(bind)
    kept: dict[str, str] = {}
    if dialect == "postgresql":
        kept = {name: bind.execute(sa.text(f"SHOW {name}")).scalar_one() for name in PLANNER}
        _configure(bind, PLANNER)
    keys = ("workspace_id", "period", *BASE)
    for t0, t1 in _batches(bind, dialect, workspaces):
        params = {
            **({"t0": _bound(dialect, t0)} if t0 is not None else {}),
            **({"t1": _bound(dialect, t1)} if t1 is not None else {}),
        }
        where = _batch_where(dialect, workspaces, t0 is not None, t1 is not None)
        bind.execute(sa.text(hour_sums_sql(AGENT_MODES, epoch, where)), params)
        for grain in GRAINS:
            bind.execute(sa.text(grain_sums_sql("agent_modes", AGENT_MODES, grain)))
        bind.execute(sa.text(f"DROP TABLE {HOURS}"))
        bind.execute(sa.text(base_keys_sql(where)), params)
        if dialect == "postgresql":  # statistics of the temporary tables, for the joins
            bind.execute(sa.text(f"ANALYZE {KEYS}"))
        else:  # an index to join the events to their key numbers
            bind.execute(sa.text(f"CREATE INDEX {KEYS}_dims ON {KEYS} ({', '.join(BASE)})"))
        bind.execute(sa.text(base_events_sql(epoch, where)), params)
        for grain in GRAINS:
            bind.execute(sa.text(base_sums_sql(grain)))
        dims: dict[int, tuple[Any, ...]] = {}
        if dialect != "postgresql":
            for row in bind.execute(sa.text(f"SELECT k, {', '.join(BASE)} FROM {KEYS}")):
                dims[row[0]] = tuple(row[1:])
        for grain in GRAINS:
            if dialect == "postgresql":
                bind.execute(sa.text(histogram_sql_postgresql(grain)))
                continue
            rows = bind.execute(
                sa.text(f"{base_buckets_sql(grain)} ORDER BY workspace_id, period, k, bucket")
            ).all()
            blobs = _histogram_rows(rows, dims)
            insert = sa.text(
                f"INSERT INTO histogram_base_{grain} ({', '.join(keys)}, latency, ttft) "
                f"VALUES ({', '.join(':' + k for k in keys)}, :latency, :ttft)"
            )
            for i in range(0, len(blobs), CHUNK):
                bind.execute(insert, blobs[i : i + CHUNK])
        bind.execute(sa.text(f"DROP TABLE {EVENTS}"))
        bind.execute(sa.text(f"DROP TABLE {KEYS}"))
    _configure(bind, kept)  # the rest of the upgrade's transaction plans as before


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        for group, members in OLD_GROUPS.items():
            for member, dims in members:
                for grain in GRAINS:
                    op.execute(compact_sql(group, f"rollup_{member}_{grain}", dims, grain))
            op.drop_table(f"rollup_delta_{group}")
        _compact_histogram_delta(bind, OLD_HISTOGRAM_DIMS)
        op.drop_table("rollup_delta_histograms")
        _create_histogram_delta(NEW_HISTOGRAM_DIMS)
        _create_sum_delta("base", BASE)
        _create_sum_delta("agent_modes", AGENT_MODES)
    for grain in GRAINS:
        _create_sum_table(f"rollup_base_{grain}", BASE)
        _create_sum_table(f"rollup_agent_modes_{grain}", AGENT_MODES)
        _create_histogram_table(f"histogram_base_{grain}", BASE)
    backfill(bind)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        for member, dims in NEW_GROUP:
            for grain in GRAINS:
                op.execute(compact_sql("base", f"rollup_{member}_{grain}", dims, grain))
        op.drop_table("rollup_delta_base")
        op.drop_table("rollup_delta_agent_modes")
        for group, members in OLD_GROUPS.items():
            _create_sum_delta(group, members[0][1])
        _compact_histogram_delta(bind, NEW_HISTOGRAM_DIMS)
        op.drop_table("rollup_delta_histograms")
        _create_histogram_delta(OLD_HISTOGRAM_DIMS)
    for grain in GRAINS:
        op.drop_table(f"rollup_base_{grain}")
        op.drop_table(f"histogram_base_{grain}")
        op.drop_table(f"rollup_agent_modes_{grain}")
