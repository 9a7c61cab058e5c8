"""The exportable datasets: their columns, options, and rows in batches.

requests, sessions and audit-events stream from the database through a server-side cursor
(`AsyncConnection.stream`), so memory stays flat however many rows there are; breakdown and
timeseries are engine answers (one row per group, or per bucket and group).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from sqlalchemy import Select, select

from tallyql.engine import analytics as engine
from tallyql.engine.analytics import Asker
from tallyql.engine.query.buckets import Granularity
from tallyql.engine.query.cost import (
    AUDIT_EVENTS_PER_HOUR,
    RAW_EVENTS_PER_HOUR,
    SESSIONS_PER_HOUR,
    export_cost,
)
from tallyql.engine.query.cost_meter import CostMeter
from tallyql.engine.query.filters import filter_conditions
from tallyql.engine.query.registry import Dimension, DimensionRef, Metric
from tallyql.engine.query.scope import Scope
from tallyql.engine.sessions import session_conditions
from tallyql.engine.unpriced import unpriced
from tallyql.exporting.params import ExportParamError, ExportParams
from tallyql.money import to_usd
from tallyql.storage.audit import AuditFilterSpec, audit_conditions
from tallyql.storage.database import Database
from tallyql.storage.tables import EVENT_TOKEN_COLUMNS, audit_events, events, sessions

BATCH_ROWS = 1_000
# generators, not just iterators: the export route closes one it stops reading
Rows = AsyncGenerator[list[Sequence[Any]], None]

REQUEST_COLUMNS = (
    "id", "timestamp", "kind", "status", "status_code", "error_type", "error_message",
    "policy_id", "policy_name", "user_id", "api_key_id", "caller_ip", "agent_id",
    "agent_instance_id", "session_id", "trace_id", "parent_id", "run_id", "node", "provider",
    "model", "tool", "mcp_server", "gateway", "protocol", "request_type", "billing_mode",
    "is_byok", *EVENT_TOKEN_COLUMNS, "cost_usd", "cost_source", "latency_ms", "ttft_ms",
    "request_bytes", "response_bytes", "tags", "metadata", "received_at",
)  # fmt: skip
SESSION_COLUMNS = (
    "id", "user_id", "agent_id", "first_ts", "last_ts", "duration_ms", "requests", "errors",
    *EVENT_TOKEN_COLUMNS, "total_tokens", "cost_usd",
)  # fmt: skip
AUDIT_COLUMNS = (
    "id", "timestamp", "actor_id", "actor_type", "action", "resource_type", "resource_id",
    "source_ip", "outcome", "details",
)  # fmt: skip
AUDIT_OPTIONS = {
    "actors": "actors",
    "actorTypes": "actor_types",
    "actions": "actions",
    "resourceTypes": "resource_types",
    "resourceIds": "resource_ids",
    "sourceIps": "source_ips",
    "outcomes": "outcomes",
}


@dataclass(frozen=True)
class ExportJob:
    db: Database
    workspace_id: int
    params: ExportParams
    meter: CostMeter | None = None
    """Pays for the export before any of its statements runs (None: not metered)."""

    @property
    def asker(self) -> Asker:
        return Asker(
            self.db,
            Scope.of(self.workspace_id),
            self.params.window,
            self.params.spec,
            meter=self.meter,  # engine answers pay for their plans, as in GraphQL
        )

    def pay_rows(self, rows_per_hour: float, what: str) -> None:
        """Pay for streaming the window's stored rows (engine/query/cost.py, `export_cost`)."""
        if self.meter is not None:
            window = self.params.window
            hours = (window.end - window.start).total_seconds() / 3600
            self.meter.charge(export_cost(hours, rows_per_hour), f"the {what} export")


async def _stream(db: Database, query: Select[Any], shape: Callable[[Any], Sequence[Any]]) -> Rows:
    async with db.read_snapshot() as conn:  # one snapshot, read through a server-side cursor
        result = await conn.stream(query.execution_options(yield_per=BATCH_ROWS))
        async for partition in result.partitions(BATCH_ROWS):
            yield [shape(row) for row in partition]


def _request_query(job: ExportJob) -> Select[Any]:
    window, e = job.params.window, events.c
    columns = [e[c] for c in REQUEST_COLUMNS if c not in ("timestamp", "cost_usd")]
    return (
        select(*columns, e.ts, e.cost_nanousd)
        .where(
            e.workspace_id == job.workspace_id,
            e.ts >= window.start,
            e.ts < window.end,
            *filter_conditions(job.params.spec, events.c, job.db.dialect),
        )
        .order_by(e.ts.desc(), e.id.desc())
    )


def _request_row(row: Any) -> Sequence[Any]:
    m = row._mapping
    return [
        m["ts"] if c == "timestamp" else to_usd(m["cost_nanousd"]) if c == "cost_usd" else m[c]
        for c in REQUEST_COLUMNS
    ]


def requests_rows(job: ExportJob) -> tuple[Sequence[str], Rows]:
    job.pay_rows(RAW_EVENTS_PER_HOUR, "requests")
    return REQUEST_COLUMNS, _stream(job.db, _request_query(job), _request_row)


def _session_row(row: Any) -> Sequence[Any]:
    m = row._mapping
    duration = (m["last_ts"] - m["first_ts"]).total_seconds() * 1000
    tokens = [m[c] for c in EVENT_TOKEN_COLUMNS]
    return [
        m["id"], m["user_id"], m["agent_id"], m["first_ts"], m["last_ts"], duration,
        m["requests"], m["errors"], *tokens, m["input_tokens"] + m["output_tokens"],
        to_usd(m["cost_nanousd"]),
    ]  # fmt: skip


def sessions_rows(job: ExportJob) -> tuple[Sequence[str], Rows]:
    conditions = session_conditions(
        job.db.dialect, job.workspace_id, job.params.window, job.params.spec
    )
    job.pay_rows(SESSIONS_PER_HOUR, "sessions")
    query = (
        select(sessions)
        .where(*conditions)
        .order_by(sessions.c.last_ts.desc(), sessions.c.id.desc())
    )
    return SESSION_COLUMNS, _stream(job.db, query, _session_row)


_AUDIT_ENUMS = ("actor_types", "actions", "outcomes")


def _audit_row(row: Any) -> Sequence[Any]:
    m = row._mapping
    return [m["ts"] if c == "timestamp" else m[c] for c in AUDIT_COLUMNS]


def audit_rows(job: ExportJob) -> tuple[Sequence[str], Rows]:
    if not job.params.spec.is_empty():
        raise ExportParamError(
            "event filters do not apply to audit-events; use " + ", ".join(AUDIT_OPTIONS)
        )
    values = {name: job.params.option_list(param) for param, name in AUDIT_OPTIONS.items()}
    # the enum fields are stored lowercase; GraphQL spells them upper (BLOCK, API_KEY), and the
    # event filters' enums are taken either way, so these are too
    for name in _AUDIT_ENUMS:
        values[name] = [v.lower() for v in values[name]]
    spec = AuditFilterSpec(**{name: tuple(v) for name, v in values.items()})
    job.pay_rows(AUDIT_EVENTS_PER_HOUR, "audit-events")
    window = job.params.window
    conditions = audit_conditions(job.workspace_id, window.start, window.end, spec)
    query = (
        select(audit_events)
        .where(*conditions)
        .order_by(audit_events.c.ts.desc(), audit_events.c.id.desc())
    )
    return AUDIT_COLUMNS, _stream(job.db, query, _audit_row)


def _enum(kind: type[Any], raw: str | None, what: str) -> Any:
    try:
        return kind(raw.upper()) if raw is not None else None
    except ValueError:
        choices = ", ".join(m.value for m in kind)
        raise ExportParamError(f"{what} must be one of {choices}") from None


def _metrics(job: ExportJob) -> tuple[Metric, ...]:
    names = job.params.option_list("metrics") or ["REQUESTS", "COST_USD"]
    return tuple(_enum(Metric, n, "metrics") for n in names)


async def _once(rows: list[Sequence[Any]]) -> Rows:
    yield rows


def breakdown_rows(job: ExportJob) -> tuple[Sequence[str], Rows]:
    dimension = _enum(Dimension, job.params.option("dimension"), "dimension")
    if dimension is None:
        raise ExportParamError("breakdown needs dimension=...")
    metrics = _metrics(job)
    order = _enum(Metric, job.params.option("orderBy"), "orderBy") or metrics[0]
    descending = (job.params.option("descending", "true") or "true").lower() != "false"
    ref = DimensionRef(dimension, metadata_key=job.params.option("metadataKey"))
    columns = (dimension.value.lower(), *(m.value.lower() for m in metrics))

    async def rows() -> Rows:
        groups = await engine.ranked_groups(job.asker, ref, metrics, order, descending)
        yield [(key, *(values[m] for m in metrics)) for key, values in groups]

    return columns, rows()


def timeseries_rows(job: ExportJob) -> tuple[Sequence[str], Rows]:
    metrics = _metrics(job)
    granularity = _enum(Granularity, job.params.option("granularity", "AUTO"), "granularity")
    group_by = _enum(Dimension, job.params.option("groupBy"), "groupBy")
    ref = DimensionRef(group_by, job.params.option("metadataKey")) if group_by else None
    try:
        limit = int(job.params.option("limitGroups", "10") or "10")
    except ValueError:
        raise ExportParamError("limitGroups must be an integer") from None
    grouped = ("group", "is_other") if ref else ()
    columns = ("bucket", *grouped, *(m.value.lower() for m in metrics))

    async def rows() -> Rows:
        result = await engine.timeseries(job.asker, metrics, granularity, ref, limit, False)
        by_group: dict[tuple[Any, bool], dict[Metric, list[float | None]]] = {}
        for s in result.series:
            by_group.setdefault((s.group, s.is_other), {})[s.metric] = s.values
        out: list[Sequence[Any]] = []
        for (group, is_other), values in by_group.items():
            for i, bucket in enumerate(result.buckets):
                head = (bucket, group, is_other) if ref else (bucket,)
                out.append((*head, *(values[m][i] for m in metrics)))
        yield out

    return columns, rows()


DATASETS: dict[str, tuple[frozenset[str], Callable[[ExportJob], tuple[Sequence[str], Rows]]]] = {
    "requests": (frozenset(), requests_rows),
    "sessions": (frozenset(), sessions_rows),
    "audit-events": (frozenset(AUDIT_OPTIONS), audit_rows),
    "breakdown": (
        frozenset({"dimension", "metrics", "metadataKey", "orderBy", "descending"}),
        breakdown_rows,
    ),
    "timeseries": (
        frozenset({"metrics", "granularity", "groupBy", "metadataKey", "limitGroups"}),
        timeseries_rows,
    ),
}


COST_DATASETS = frozenset({"requests", "sessions", "breakdown", "timeseries"})
"""Exports that carry costs, and so say what their costs leave out (`unpriced_headers`)."""


async def unpriced_headers(job: ExportJob) -> dict[str, str]:
    """Response headers of a cost export: how many events of its range and filter are
    unpriced (counted as 0 USD), and their models as percent-encoded provider/model pairs,
    most events first."""
    found = await unpriced(job.asker)
    models = ",".join(
        f"{quote(m.provider or '', safe='')}/{quote(m.model or '', safe='')}" for m in found.models
    )
    return {"X-Tallyql-Unpriced-Events": str(found.events), "X-Tallyql-Unpriced-Models": models}
