"""Scheduled reports: `reports`, `report(id) { runs }` (READ); `createReport`, `updateReport`,
`deleteReport`, `runReport` (MANAGE: admins and members). Files are downloaded from
GET /v1/reports/runs/{id}/file."""

from __future__ import annotations

import asyncio
from datetime import datetime
from enum import Enum
from typing import Annotated, Any

import strawberry

from tallyql.auth.principal import Permission
from tallyql.engine.query.registry import Dimension as EngineDimension
from tallyql.reports import model, store
from tallyql.reports.model import FILE_DAYS, MAX_SECTIONS, MAX_TOP
from tallyql.schema.analytics import Dimension
from tallyql.schema.base.common import AfterArg, EventFilter, FirstArg, IdArg
from tallyql.schema.base.context import TallyInfo
from tallyql.schema.base.crud import DeletePayload, actor_of, deleted, not_found, saved
from tallyql.schema.base.errors import UserError
from tallyql.schema.base.filter_output import filter_as_input
from tallyql.schema.base.pages import Connection, row_connection
from tallyql.schema.base.scalars import JSON


@strawberry.enum(description="The window a report covers, relative to its scheduled moment.")
class ReportRange(Enum):
    _value_: str  # what strawberry.enum_value(...) holds; the checker sees only the wrapper
    PREVIOUS_DAY = strawberry.enum_value(
        "previous_day", description="The whole local day before the run."
    )
    PREVIOUS_WEEK = strawberry.enum_value(
        "previous_week", description="The whole local week (Monday to Sunday) before the run."
    )
    PREVIOUS_MONTH = strawberry.enum_value(
        "previous_month", description="The whole local month before the run."
    )
    MONTH_TO_DATE = strawberry.enum_value(
        "month_to_date", description="From the start of the local month to the run."
    )
    LAST_24H = strawberry.enum_value("last_24h", description="The 24 hours before the run.")
    LAST_7D = strawberry.enum_value("last_7d", description="The 7 days before the run.")
    LAST_30D = strawberry.enum_value("last_30d", description="The 30 days before the run.")


@strawberry.enum(description="What a report section shows.")
class ReportSectionKind(Enum):
    _value_: str  # what strawberry.enum_value(...) holds; the checker sees only the wrapper
    OVERVIEW = strawberry.enum_value(
        "overview",
        description="Requests, error rate, cost, tokens, P95 latency of LLM calls and active "
        "users, against the previous period of the same length.",
    )
    BREAKDOWN = strawberry.enum_value(
        "breakdown",
        description="The top groups of a dimension by cost, with requests, tokens and errors.",
    )
    COST_INSIGHTS = strawberry.enum_value(
        "cost_insights", description="Cost trend against the previous period and projection."
    )
    BUDGETS = strawberry.enum_value(
        "budgets", description="Each budget's spend, limit and state at the end of the range."
    )
    SESSION_STATS = strawberry.enum_value(
        "session_stats", description="Exact P50, average and P95 of the sessions' measures."
    )
    ERRORS = strawberry.enum_value("errors", description="Errors and error rate by model.")


@strawberry.enum(description="A file a report run makes.")
class ReportFormat(Enum):
    _value_: str  # what strawberry.enum_value(...) holds; the checker sees only the wrapper
    CSV = strawberry.enum_value("csv", description="A zip holding one CSV per section.")
    HTML = strawberry.enum_value("html", description="One HTML page of tables.")
    PDF = strawberry.enum_value("pdf", description="A PDF with tables and bar charts.")


@strawberry.enum(description="Where a report run stands.")
class ReportRunStatus(Enum):
    RUNNING = strawberry.enum_value("running", description="Rendering or delivering.")
    SUCCEEDED = strawberry.enum_value("succeeded", description="Files made (see delivery).")
    FAILED = strawberry.enum_value("failed", description="Rendering failed (see error).")


@strawberry.type(description="One section of a report.")
class ReportSection:
    kind: ReportSectionKind = strawberry.field(description="What it shows.")
    dimension: Dimension | None = strawberry.field(
        description="For BREAKDOWN: the dimension grouped by."
    )
    top: int = strawberry.field(description="For BREAKDOWN: how many groups (count).")


@strawberry.input(description="One section of a report.")
class ReportSectionInput:
    kind: ReportSectionKind = strawberry.field(description="What it shows.")
    dimension: Dimension | None = strawberry.field(
        default=None, description="For BREAKDOWN (required there): the dimension to group by."
    )
    top: int = strawberry.field(
        default=10, description=f"For BREAKDOWN: how many groups, 1 to {MAX_TOP}."
    )

    def to_model(self) -> model.Section:
        dimension = EngineDimension(self.dimension.value) if self.dimension else None
        return model.Section(model.SectionKind(self.kind.value), dimension, self.top)


@strawberry.type(description="A file of a report run, downloadable for 30 days.")
class ReportFile:
    format: ReportFormat = strawberry.field(description="The file's format.")
    filename: str = strawberry.field(description="Its name.")
    url: str = strawberry.field(
        description="Where to GET it (with the same bearer key): "
        "/v1/reports/runs/<run id>/file?format=<format>."
    )
    expires_at: datetime = strawberry.field(description="When it can no longer be downloaded.")


@strawberry.type(description="One run of a report.")
class ReportRun:
    id: strawberry.ID = strawberry.field(description="The run's id.")
    due_at: datetime = strawberry.field(description="The scheduled moment (manual: the request).")
    manual: bool = strawberry.field(description="Started by runReport rather than the schedule.")
    status: ReportRunStatus = strawberry.field(description="Where it stands.")
    range_start: datetime = strawberry.field(description="The range covered, inclusive.")
    range_end: datetime = strawberry.field(description="The range covered, exclusive.")
    started_at: datetime = strawberry.field(description="When the run started.")
    finished_at: datetime | None = strawberry.field(
        description="When it ended; null while running."
    )
    duration_ms: int | None = strawberry.field(description="How long it took, in ms.")
    size_bytes: int | None = strawberry.field(description="The files' total size, in bytes.")
    error: str | None = strawberry.field(description="Why it failed; null otherwise.")
    delivery: JSON = strawberry.field(
        description='What happened to the email: {"email": {"status": "sent" | "failed", '
        '"attempts", "error"}}; {} without recipients. Webhooks are in webhookDeliveries.'
    )
    _workspace_id: strawberry.Private[int]

    @strawberry.field(description=f"The run's files, kept for {FILE_DAYS} days.")
    async def files(self, info: TallyInfo) -> list[ReportFile]:
        rows = await store.run_files(info.context.services.db, self._workspace_id, str(self.id))
        return [
            ReportFile(
                format=ReportFormat(r["format"]),
                filename=r["filename"],
                url=f"/v1/reports/runs/{self.id}/file?format={r['format']}",
                expires_at=r["expires_at"],
            )
            for r in rows
        ]

    @classmethod
    def of(cls, row: dict[str, Any]) -> ReportRun:
        return cls(
            id=strawberry.ID(row["id"]),
            due_at=row["due_at"],
            manual=row["trigger"] == "manual",
            status=ReportRunStatus(row["status"]),
            range_start=row["range_start"],
            range_end=row["range_end"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            duration_ms=row["duration_ms"],
            size_bytes=row["size_bytes"],
            error=row["error"],
            delivery=row["delivery"],
            _workspace_id=row["workspace_id"],
        )


@strawberry.type(description="A report that runs on a schedule and is delivered.")
class Report:
    id: strawberry.ID = strawberry.field(description="The report's id.")
    name: str = strawberry.field(description="A name for people (the email subject).")
    schedule: str = strawberry.field(
        description="A five-field cron expression read in timezone, e.g. 0 8 * * 1."
    )
    timezone: str = strawberry.field(description="The IANA zone of the schedule and the range.")
    range: ReportRange = strawberry.field(description="The window each run covers.")
    filter: JSON = strawberry.field(description="The report's EventFilter ({} for all events).")
    sections: list[ReportSection] = strawberry.field(description="What it shows, in order.")
    formats: list[ReportFormat] = strawberry.field(description="The files each run makes.")
    recipients: list[str] = strawberry.field(description="Email addresses the files go to.")
    webhook_ids: list[strawberry.ID] = strawberry.field(
        description="Webhooks notified (report.completed) after each run."
    )
    enabled: bool = strawberry.field(description="Disabled reports run only on demand.")
    next_run_at: datetime | None = strawberry.field(
        description="The next scheduled moment; null while disabled."
    )
    created_at: datetime = strawberry.field(description="When the report was created.")
    updated_at: datetime = strawberry.field(description="When it was last changed.")
    _workspace_id: strawberry.Private[int]

    @strawberry.field(description="Its runs, newest first.")
    async def runs(
        self, info: TallyInfo, first: FirstArg = 20, after: AfterArg = None
    ) -> Connection[ReportRun]:
        page = await store.list_runs(
            info.context.services.db, self._workspace_id, str(self.id), first, after
        )
        return row_connection(page, after, ReportRun.of)

    @classmethod
    def of(cls, r: model.Report) -> Report:
        return cls(
            id=strawberry.ID(r.id),
            name=r.name,
            schedule=r.schedule,
            timezone=r.timezone,
            range=ReportRange(r.range.value),
            filter=filter_as_input(r.filter),
            sections=[
                ReportSection(
                    kind=ReportSectionKind(s.kind.value),
                    dimension=Dimension(s.dimension.value) if s.dimension else None,
                    top=s.top,
                )
                for s in r.sections
            ],
            formats=[ReportFormat(f.value) for f in r.formats],
            recipients=list(r.recipients),
            webhook_ids=[strawberry.ID(i) for i in r.webhook_ids],
            enabled=r.enabled,
            next_run_at=r.next_run_at,
            created_at=r.created_at,
            updated_at=r.updated_at,
            _workspace_id=r.workspace_id,
        )


@strawberry.input(description="A new report.")
class ReportInput:
    name: str = strawberry.field(description="A name for people (1 to 200 characters).")
    schedule: str = strawberry.field(
        description="A five-field cron expression (minute hour day month weekday) read in "
        "timezone; runs at least 5 minutes apart. E.g. 0 8 * * 1: Mondays at 08:00."
    )
    sections: list[ReportSectionInput] = strawberry.field(
        description=f"What it shows, in order (1 to {MAX_SECTIONS})."
    )
    timezone: str = strawberry.field(default="UTC", description="An IANA time zone.")
    range: ReportRange = strawberry.field(
        default=ReportRange.PREVIOUS_DAY, description="The window each run covers."
    )
    filter: EventFilter | None = strawberry.field(
        default=None, description="Which events count; null: all of the workspace."
    )
    formats: list[ReportFormat] = strawberry.field(
        default_factory=lambda: [ReportFormat.PDF], description="The files each run makes."
    )
    recipients: list[str] = strawberry.field(
        default_factory=list,
        description="Email addresses the files go to (needs TALLYQL_SMTP_URL; at most 50).",
    )
    webhook_ids: list[strawberry.ID] = strawberry.field(
        default_factory=list, description="Webhooks notified (report.completed) after each run."
    )
    enabled: bool = strawberry.field(default=True, description="Run on the schedule.")


@strawberry.input(description="Fields to change; omitted (or null) fields keep their value.")
class ReportPatch:
    name: str | None = strawberry.field(default=None, description="New value: the name.")
    schedule: str | None = strawberry.field(default=None, description="New value: the cron.")
    sections: list[ReportSectionInput] | None = strawberry.field(
        default=None, description="New value: the sections."
    )
    timezone: str | None = strawberry.field(default=None, description="New value: the zone.")
    range: ReportRange | None = strawberry.field(default=None, description="New value: the range.")
    filter: EventFilter | None = strawberry.field(default=None, description="New value: filter.")
    formats: list[ReportFormat] | None = strawberry.field(
        default=None, description="New value: the formats."
    )
    recipients: list[str] | None = strawberry.field(
        default=None, description="New value: the recipients."
    )
    webhook_ids: list[strawberry.ID] | None = strawberry.field(
        default=None, description="New value: the webhooks."
    )
    enabled: bool | None = strawberry.field(default=None, description="New value: enabled.")


@strawberry.type(description="The result of a report mutation.")
class ReportPayload:
    report: Report | None = strawberry.field(description="The report as stored; null on errors.")
    user_errors: list[UserError] = strawberry.field(
        description="What was wrong with the input; empty on success."
    )


@strawberry.type(description="The result of runReport.")
class RunReportPayload:
    run: ReportRun | None = strawberry.field(
        description="The run, RUNNING: it renders and delivers in the background (poll "
        "report(id) { runs })."
    )
    user_errors: list[UserError] = strawberry.field(
        description="What was wrong with the input; empty on success."
    )


def _fields(value: ReportInput | ReportPatch) -> store.ReportFields:
    return store.ReportFields(
        name=value.name,
        schedule=value.schedule,
        timezone=value.timezone,
        range=model.ReportRange(value.range.value) if value.range is not None else None,
        filter=value.filter.to_spec() if value.filter is not None else None,
        sections=[s.to_model() for s in value.sections] if value.sections is not None else None,
        formats=[model.ReportFormat(f.value) for f in value.formats]
        if value.formats is not None
        else None,
        recipients=list(value.recipients) if value.recipients is not None else None,
        webhook_ids=[str(i) for i in value.webhook_ids] if value.webhook_ids is not None else None,
        enabled=value.enabled,
    )


@strawberry.type
class ReportQuery:
    @strawberry.field(description="The workspace's scheduled reports, oldest first.")
    async def reports(
        self, info: TallyInfo, first: FirstArg = 50, after: AfterArg = None
    ) -> Connection[Report]:
        principal = info.context.require(Permission.READ)
        page = await store.list_reports(
            info.context.services.db, principal.workspace_id, first, after
        )
        return row_connection(page, after, lambda r: Report.of(model.Report.from_row(r)))

    @strawberry.field(description="One report by id; null when absent.")
    async def report(self, info: TallyInfo, id: IdArg) -> Report | None:
        principal = info.context.require(Permission.READ)
        found = await store.get_report(info.context.services.db, principal.workspace_id, str(id))
        return Report.of(found) if found else None


# background runs started by runReport: kept referenced until they end
_RUNNING: set[asyncio.Task[None]] = set()


@strawberry.type
class ReportMutation:
    @strawberry.mutation(description="Create a scheduled report (admin or member).")
    async def create_report(
        self,
        info: TallyInfo,
        input: Annotated[ReportInput, strawberry.argument(description="The new report.")],
    ) -> ReportPayload:
        principal = info.context.require(Permission.MANAGE)
        services = info.context.services
        found, errors = await saved(
            "report",
            store.create_report(
                services.db,
                principal.workspace_id,
                _fields(input),
                actor_of(info, principal),
                services.mailer.configured,
            ),
        )
        return ReportPayload(report=Report.of(found) if found else None, user_errors=errors)

    @strawberry.mutation(description="Change a report (admin or member).")
    async def update_report(
        self,
        info: TallyInfo,
        id: IdArg,
        input: Annotated[ReportPatch, strawberry.argument(description="The fields to change.")],
    ) -> ReportPayload:
        principal = info.context.require(Permission.MANAGE)
        services = info.context.services
        found, errors = await saved(
            "report",
            store.update_report(
                services.db,
                principal.workspace_id,
                str(id),
                _fields(input),
                actor_of(info, principal),
                services.mailer.configured,
            ),
        )
        return ReportPayload(report=Report.of(found) if found else None, user_errors=errors)

    @strawberry.mutation(description="Delete a report; its runs and files stay until they expire.")
    async def delete_report(self, info: TallyInfo, id: IdArg) -> DeletePayload:
        principal = info.context.require(Permission.MANAGE)
        db = info.context.services.db
        actor = actor_of(info, principal)
        return await deleted(
            "report", id, store.delete_report(db, principal.workspace_id, str(id), actor)
        )

    @strawberry.mutation(description="Run a report now, outside its schedule.")
    async def run_report(self, info: TallyInfo, id: IdArg) -> RunReportPayload:
        principal = info.context.require(Permission.MANAGE)
        services = info.context.services
        found = await store.get_report(services.db, principal.workspace_id, str(id))
        if found is None or services.report_runner is None:
            return RunReportPayload(run=None, user_errors=not_found("report"))
        runner = services.report_runner
        run_id, window = await runner.start_now(found)
        task = asyncio.create_task(runner.execute(found, run_id, window))
        _RUNNING.add(task)
        task.add_done_callback(_RUNNING.discard)
        page = await store.list_runs(services.db, principal.workspace_id, found.id, 1, None)
        return RunReportPayload(run=ReportRun.of(page.rows[0]), user_errors=[])
