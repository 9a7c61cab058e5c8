"""Chargeback statements: per department (the cost centre its users had when their events were
stored), for a calendar month or quarter in an IANA zone, line items by member and by model
with requests, tokens and cost, and the unpriced events the cost leaves out.

Totals come from the same engine questions as `overview`, so a statement's total equals the
overview of the same window exactly, and a department's equals the overview filtered by that
department. A period that has ended is issued once and kept (storage/statement_snapshots.py):
reading it again returns the issued figures even when late events arrive; only a repricing
of the period's events (prices re-applied) restates it, as a new version that says why.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime, time
from enum import Enum
from typing import Any
from zoneinfo import ZoneInfo

from tallyql.clock import clock
from tallyql.engine.analytics import Asker
from tallyql.engine.query.registry import Dimension, Metric
from tallyql.engine.ranking import grouped
from tallyql.engine.unpriced import UNPRICED
from tallyql.storage.database import Database
from tallyql.storage.statement_snapshots import (
    Snapshot,
    SnapshotKey,
    issue,
    latest,
    repricings_since,
)

LINE_METRICS = (
    Metric.REQUESTS,
    Metric.INPUT_TOKENS,
    Metric.OUTPUT_TOKENS,
    Metric.TOTAL_TOKENS,
    Metric.COST_USD,
)
BODY_FORMAT = 1
"""The layout of a stored statement's body; a snapshot of another layout is reissued."""


class StatementPeriod(Enum):
    MONTH = "month"
    QUARTER = "quarter"


def period_bounds(
    period: StatementPeriod, of: date, tz: ZoneInfo
) -> tuple[date, datetime, datetime]:
    """The period holding the local date `of`: its first local day and [start, end) in UTC."""
    months = 1 if period is StatementPeriod.MONTH else 3
    first_month = of.month if months == 1 else (of.month - 1) // 3 * 3 + 1
    first = date(of.year, first_month, 1)
    index = first.year * 12 + first.month - 1 + months
    after = date(index // 12, index % 12 + 1, 1)
    start = datetime.combine(first, time(), tz).astimezone(UTC)
    end = datetime.combine(after, time(), tz).astimezone(UTC)
    return first, start, end


@dataclass(frozen=True)
class Line:
    """One line of a statement: a member, a model or a total."""

    key: str | None
    provider: str | None = None
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cost_usd: float = 0.0
    unpriced_events: int = 0


@dataclass(frozen=True)
class DepartmentStatement:
    department: str | None
    totals: Line
    members: list[Line] = field(default_factory=list)
    models: list[Line] = field(default_factory=list)
    unpriced_models: list[Line] = field(default_factory=list)
    """Models with unpriced events (requests = how many), the most frequent first."""


@dataclass(frozen=True)
class Statements:
    period: StatementPeriod
    first_day: date
    start: datetime
    end: datetime
    timezone: str
    closed: bool
    totals: Line
    departments: list[DepartmentStatement]
    issued_at: datetime | None = None
    version: int | None = None
    restated_reason: str | None = None

    def department(self, name: str | None) -> DepartmentStatement | None:
        return next((d for d in self.departments if d.department == name), None)


def _line(key: str | None, values: dict[Any, float | None], provider: str | None = None) -> Line:
    def count(metric: Metric) -> int:
        return int(values.get(metric) or 0)

    return Line(
        key=key,
        provider=provider,
        requests=count(Metric.REQUESTS),
        input_tokens=count(Metric.INPUT_TOKENS),
        output_tokens=count(Metric.OUTPUT_TOKENS),
        total_tokens=count(Metric.TOTAL_TOKENS),
        cost_usd=float(values.get(Metric.COST_USD) or 0.0),
    )


def _by_cost(line: Line) -> tuple[Any, ...]:
    return (-line.cost_usd, -line.requests, line.key or "", line.provider or "")


async def compute(asker: Asker) -> tuple[Line, list[DepartmentStatement]]:
    """The statement figures of the asker's window (five engine questions, run together)."""
    unpriced_spec = replace(asker.filter, cost_sources=(UNPRICED,))
    dept, member, model = Dimension.DEPARTMENT, Dimension.USER, Dimension.MODEL
    total, depts, members, models, unpriced = await asyncio.gather(
        grouped(asker, (), LINE_METRICS),
        grouped(asker, (dept,), LINE_METRICS),
        grouped(asker, (dept, member), LINE_METRICS),
        grouped(asker, (dept, Dimension.PROVIDER, model), LINE_METRICS),
        grouped(asker, (dept, Dimension.PROVIDER, model), (Metric.REQUESTS,), unpriced_spec),
    )
    unpriced_by: dict[Any, list[Line]] = {}
    unpriced_of_member_model: dict[tuple[Any, Any, Any], int] = {}
    for (d, provider, m), values in unpriced:
        events = int(values.get(Metric.REQUESTS) or 0)
        if events:
            unpriced_by.setdefault(d, []).append(Line(key=m, provider=provider, requests=events))
            unpriced_of_member_model[(d, provider, m)] = events
    member_lines: dict[Any, list[Line]] = {}
    for (d, user), values in members:
        member_lines.setdefault(d, []).append(_line(user, values))
    model_lines: dict[Any, list[Line]] = {}
    for (d, provider, m), values in models:
        line = replace(
            _line(m, values, provider),
            unpriced_events=unpriced_of_member_model.get((d, provider, m), 0),
        )
        model_lines.setdefault(d, []).append(line)
    departments = []
    for (d,), values in depts:
        unpriced_models = sorted(unpriced_by.get(d, []), key=lambda x: (-x.requests, x.key or ""))
        totals = replace(_line(d, values), unpriced_events=sum(x.requests for x in unpriced_models))
        departments.append(
            DepartmentStatement(
                department=d,
                totals=totals,
                members=sorted(member_lines.get(d, []), key=_by_cost),
                models=sorted(model_lines.get(d, []), key=_by_cost),
                unpriced_models=unpriced_models,
            )
        )
    departments.sort(key=lambda s: (s.department is None, _by_cost(s.totals)))
    overall = _line(None, total[0][1] if total else {})
    overall = replace(overall, unpriced_events=sum(d.totals.unpriced_events for d in departments))
    return overall, departments


def _body(totals: Line, departments: list[DepartmentStatement]) -> dict[str, Any]:
    return {
        "format": BODY_FORMAT,
        "totals": asdict(totals),
        "departments": [asdict(d) for d in departments],
    }


def _from_body(body: dict[str, Any]) -> tuple[Line, list[DepartmentStatement]]:
    def lines(items: list[dict[str, Any]]) -> list[Line]:
        return [Line(**item) for item in items]

    departments = [
        DepartmentStatement(
            department=d["department"],
            totals=Line(**d["totals"]),
            members=lines(d["members"]),
            models=lines(d["models"]),
            unpriced_models=lines(d["unpriced_models"]),
        )
        for d in body["departments"]
    ]
    return Line(**body["totals"]), departments


async def statements(
    db: Database,
    asker: Asker,
    workspace_id: int,
    period: StatementPeriod,
    of: date,
    timezone: str,
) -> Statements:
    """The statements of the period holding `of` (the asker's window must be that period):
    computed live while the period is open, issued once when it has ended, restated only
    after a repricing that changed costs in it."""
    first, start, end = period_bounds(period, of, ZoneInfo(timezone))
    head = Statements(period, first, start, end, timezone, False, Line(None), [])
    if end > clock.now():
        totals, departments = await compute(asker)
        return replace(head, totals=totals, departments=departments)
    key = SnapshotKey(workspace_id, period.value, first.isoformat(), timezone)
    async with db.read() as conn:
        kept = await latest(conn, key)
        repricings = (
            await repricings_since(conn, workspace_id, kept.issued_at, start, end)
            if kept is not None
            else []
        )
    if kept is not None and not repricings and kept.body.get("format") == BODY_FORMAT:
        totals, departments = _from_body(kept.body)
        return _issued(head, kept, totals, departments)
    totals, departments = await compute(asker)
    if kept is None:
        version, reason = 1, None
    elif repricings:
        last = repricings[-1]
        version = kept.version + 1
        reason = (
            f"prices re-applied at {last.at.isoformat()} (audit event {last.audit_id}) "
            f"changed the cost of {sum(r.changed for r in repricings)} events in the period"
        )
    else:
        version, reason = kept.version + 1, "reissued in the current statement layout"
    snapshot = Snapshot(version, clock.now(), reason, _body(totals, departments))
    async with db.write() as conn:
        await issue(conn, key, snapshot)
        stored = await latest(conn, key)
    # another replica may have issued this version first: answer with what is stored
    assert stored is not None
    totals, departments = _from_body(stored.body)
    return _issued(head, stored, totals, departments)


def _issued(
    head: Statements, kept: Snapshot, totals: Line, departments: list[DepartmentStatement]
) -> Statements:
    return replace(
        head,
        closed=True,
        totals=totals,
        departments=departments,
        issued_at=kept.issued_at,
        version=kept.version,
        restated_reason=kept.reason,
    )
