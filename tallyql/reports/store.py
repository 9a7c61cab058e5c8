"""Reports in the database: create, change, delete (each audited); runs, claimed once per
scheduled moment by a unique key, so that of several replicas exactly one runs it; files."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from tallyql.clock import clock
from tallyql.engine.filter_codec import spec_to_json
from tallyql.engine.filters import EventFilterSpec
from tallyql.reports.model import (
    FILE_DAYS,
    Report,
    ReportError,
    ReportFormat,
    ReportRange,
    Section,
    check_recipients,
    check_schedule,
    check_sections,
    zone_of,
)
from tallyql.storage.audit import Actor, audit_change
from tallyql.storage.database import Database
from tallyql.storage.pages import Page, keyset_page
from tallyql.storage.report_tables import report_files, report_runs, reports
from tallyql.webhooks.store import existing_ids

MAX_NAME = 200


@dataclass
class ReportFields:
    """Settable fields; None leaves a field as it is (on update)."""

    name: str | None = None
    schedule: str | None = None
    timezone: str | None = None
    range: ReportRange | None = None
    filter: EventFilterSpec | None = None
    sections: list[Section] | None = None
    formats: list[ReportFormat] | None = None
    recipients: list[str] | None = None
    webhook_ids: list[str] | None = None
    enabled: bool | None = None


async def _values(
    conn: Any, workspace_id: int, fields: ReportFields, base: dict[str, Any], mail: bool
) -> dict[str, Any]:
    values = dict(base)
    for name in ("name", "schedule", "timezone", "enabled"):
        given = getattr(fields, name)
        if given is not None:
            values[name] = given
    if fields.range is not None:
        values["range"] = fields.range.value
    if fields.filter is not None:
        values["filter"] = spec_to_json(fields.filter)
    if fields.sections is not None:
        check_sections(fields.sections)
        values["sections"] = [s.to_json() for s in fields.sections]
    if fields.formats is not None:
        if not fields.formats:
            raise ReportError("formats", "give at least one format")
        values["formats"] = [f.value for f in dict.fromkeys(fields.formats)]
    if fields.recipients is not None:
        values["recipients"] = check_recipients(fields.recipients)
        if values["recipients"] and not mail:
            raise ReportError("recipients", "email needs an SMTP server (TALLYQL_SMTP_URL)")
    if fields.webhook_ids is not None:
        wanted = list(dict.fromkeys(fields.webhook_ids))
        missing = set(wanted) - await existing_ids(conn, workspace_id, wanted)
        if missing:
            raise ReportError("webhookIds", f"no such webhook: {', '.join(sorted(missing))}")
        values["webhook_ids"] = wanted
    name = values["name"].strip()
    if not name or len(name) > MAX_NAME:
        raise ReportError("name", f"give the report a name of 1 to {MAX_NAME} characters")
    zone_of(values["timezone"])
    now = clock.now()
    first = check_schedule(values["schedule"], values["timezone"], now)
    values["next_run_at"] = first if values["enabled"] else None
    values["updated_at"] = now
    return values


async def create_report(
    db: Database, workspace_id: int, fields: ReportFields, actor: Actor, mail: bool
) -> Report:
    now = clock.now()
    base = {
        "workspace_id": workspace_id,
        "id": uuid.uuid4().hex,
        "name": "",
        "schedule": "",
        "timezone": "UTC",
        "range": ReportRange.PREVIOUS_DAY.value,
        "filter": {},
        "sections": [],
        "formats": [ReportFormat.PDF.value],
        "recipients": [],
        "webhook_ids": [],
        "enabled": True,
        "next_run_at": None,
        "created_at": now,
        "updated_at": now,
    }
    if fields.sections is None:
        raise ReportError("sections", "give 1 or more sections")
    async with db.write() as conn:
        values = await _values(conn, workspace_id, fields, base, mail)
        await conn.execute(reports.insert().values(**values))
        await audit_change(
            conn, workspace_id, "create", "report", values["id"], actor, _described(values)
        )
    return Report.from_row(values)


async def update_report(
    db: Database, workspace_id: int, report_id: str, fields: ReportFields, actor: Actor, mail: bool
) -> Report | None:
    async with db.write() as conn:
        row = await _row(conn, workspace_id, report_id)
        if row is None:
            return None
        values = await _values(conn, workspace_id, fields, row, mail)
        await conn.execute(
            update(reports)
            .where(reports.c.workspace_id == workspace_id, reports.c.id == report_id)
            .values(**values)
        )
        await audit_change(
            conn, workspace_id, "update", "report", report_id, actor, _described(values)
        )
    return Report.from_row(values)


async def delete_report(db: Database, workspace_id: int, report_id: str, actor: Actor) -> bool:
    async with db.write() as conn:
        row = await _row(conn, workspace_id, report_id)
        if row is None:
            return False
        await conn.execute(
            delete(reports).where(reports.c.workspace_id == workspace_id, reports.c.id == report_id)
        )
        await audit_change(
            conn, workspace_id, "delete", "report", report_id, actor, {"name": row["name"]}
        )
    return True


async def get_report(db: Database, workspace_id: int, report_id: str) -> Report | None:
    async with db.read() as conn:
        row = await _row(conn, workspace_id, report_id)
    return Report.from_row(row) if row else None


async def list_reports(db: Database, workspace_id: int, first: int, after: str | None) -> Page:
    query = select(reports).where(reports.c.workspace_id == workspace_id)
    return await keyset_page(
        db, query, reports.c.created_at, reports.c.id, "rp", first, after, False
    )


async def due_reports(db: Database, now: datetime) -> list[Report]:
    async with db.read() as conn:
        rows = (
            await conn.execute(
                select(reports)
                .where(reports.c.enabled.is_(True), reports.c.next_run_at <= now)
                .order_by(reports.c.next_run_at, reports.c.workspace_id, reports.c.id)
            )
        ).mappings()
        return [Report.from_row(r) for r in rows]


async def claim_run(
    db: Database,
    report: Report,
    due_at: datetime,
    trigger: str,
    window: tuple[datetime, datetime],
    next_run_at: datetime | None,
) -> str | None:
    """Record a run of `report` for the moment `due_at` and move the schedule on, in one
    transaction; None when another replica claimed that moment first."""
    run_id = uuid.uuid4().hex
    now = clock.now()
    try:
        async with db.write() as conn:
            await conn.execute(
                report_runs.insert().values(
                    workspace_id=report.workspace_id,
                    id=run_id,
                    report_id=report.id,
                    due_at=due_at,
                    trigger=trigger,
                    status="running",
                    range_start=window[0],
                    range_end=window[1],
                    started_at=now,
                    delivery={},
                    expires_at=now + timedelta(days=FILE_DAYS),
                )
            )
            if trigger == "schedule":
                await conn.execute(
                    update(reports)
                    .where(reports.c.workspace_id == report.workspace_id, reports.c.id == report.id)
                    .values(next_run_at=next_run_at)
                )
    except IntegrityError:
        return None
    return run_id


async def finish_run(
    db: Database,
    workspace_id: int,
    run_id: str,
    files: list[dict[str, Any]],
    error: str | None,
    delivery: dict[str, Any],
) -> None:
    now = clock.now()
    async with db.write() as conn:
        started = (
            await conn.execute(
                select(report_runs.c.started_at, report_runs.c.expires_at).where(
                    report_runs.c.workspace_id == workspace_id, report_runs.c.id == run_id
                )
            )
        ).one()
        for f in files:
            await conn.execute(
                report_files.insert().values(
                    workspace_id=workspace_id,
                    run_id=run_id,
                    format=f["format"],
                    filename=f["filename"],
                    media_type=f["media_type"],
                    content=f["content"],
                    expires_at=started.expires_at,
                )
            )
        await conn.execute(
            update(report_runs)
            .where(report_runs.c.workspace_id == workspace_id, report_runs.c.id == run_id)
            .values(
                status="failed" if error else "succeeded",
                finished_at=now,
                duration_ms=round((now - started.started_at).total_seconds() * 1000),
                size_bytes=sum(len(f["content"]) for f in files),
                error=error,
                delivery=delivery,
            )
        )


async def list_runs(
    db: Database, workspace_id: int, report_id: str, first: int, after: str | None
) -> Page:
    t = report_runs
    query = select(t).where(t.c.workspace_id == workspace_id, t.c.report_id == report_id)
    return await keyset_page(db, query, t.c.started_at, t.c.id, "rr", first, after, True)


async def run_files(db: Database, workspace_id: int, run_id: str) -> list[dict[str, Any]]:
    """The run's files that have not expired (without their content)."""
    t = report_files
    async with db.read() as conn:
        rows = await conn.execute(
            select(t.c.format, t.c.filename, t.c.media_type, t.c.expires_at).where(
                t.c.workspace_id == workspace_id, t.c.run_id == run_id, t.c.expires_at > clock.now()
            )
        )
        return [dict(r) for r in rows.mappings()]


async def file_content(
    db: Database, workspace_id: int, run_id: str, fmt: str
) -> tuple[str, str, bytes] | None:
    t = report_files
    async with db.read() as conn:
        row = (
            await conn.execute(
                select(t.c.filename, t.c.media_type, t.c.content).where(
                    t.c.workspace_id == workspace_id,
                    t.c.run_id == run_id,
                    t.c.format == fmt,
                    t.c.expires_at > clock.now(),
                )
            )
        ).first()
    return None if row is None else (row.filename, row.media_type, bytes(row.content))


async def purge_expired(db: Database) -> int:
    async with db.write() as conn:
        result = await conn.execute(
            delete(report_files).where(report_files.c.expires_at <= clock.now())
        )
    return int(result.rowcount or 0)


async def _row(conn: Any, workspace_id: int, report_id: str) -> dict[str, Any] | None:
    found = (
        (
            await conn.execute(
                select(reports).where(
                    reports.c.workspace_id == workspace_id, reports.c.id == report_id
                )
            )
        )
        .mappings()
        .first()
    )
    return dict(found) if found else None


def _described(values: dict[str, Any]) -> dict[str, Any]:
    keys = ("name", "schedule", "timezone", "range", "sections", "formats", "recipients", "enabled")
    return {k: values[k] for k in keys}
