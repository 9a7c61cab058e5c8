"""Runs reports when they are due, and on demand.

Every replica polls for due reports. A scheduled moment is claimed by inserting its run under
a unique (workspace, report, moment) key in the same transaction that moves the schedule on,
so exactly one replica runs it; a moment that passed while every replica was down runs once
at start (missed moments are not replayed one by one: the schedule moves to its next future
moment). The range is taken relative to the scheduled moment, so a late run reports the same
period it would have on time. A run renders its formats, stores them for download (30 days),
emails them to the recipients (three attempts) and notifies the webhooks
(`report.completed`), and is audited."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any

from tallyql.clock import clock
from tallyql.engine.analytics import Asker
from tallyql.engine.query.scope import Scope
from tallyql.engine.query.timerange import TimeWindow
from tallyql.mail.smtp import Attachment, Mailer, MailError
from tallyql.reports import store
from tallyql.reports.model import Report, next_run, range_window, zone_of
from tallyql.reports.render import MEDIA_TYPES, Rendered, encode, file_name, render_tables
from tallyql.storage.audit import AuditRecord, record_audit
from tallyql.storage.database import Database
from tallyql.storage.jobs import PeriodicJob
from tallyql.webhooks.store import enqueue

log = logging.getLogger(__name__)

MAIL_ATTEMPTS = 3
WEBHOOK_EVENT = "report.completed"


class ReportRunner(PeriodicJob):
    name = "reports"

    def __init__(
        self,
        db: Database,
        mailer: Mailer,
        poll_seconds: float,
        job_reports: dict[str, dict[str, Any]] | None,
        mail_backoff_seconds: float = 2.0,
    ) -> None:
        super().__init__(poll_seconds, job_reports)
        self.db = db
        self.mailer = mailer
        self.mail_backoff_seconds = mail_backoff_seconds
        self.report_runs = 0
        """Report runs this process made (scheduled and manual)."""

    async def work(self) -> dict[str, Any]:
        """Run the due reports (a failed report run is recorded as such, and does not stop
        the others), then drop expired files."""
        await self.run_due()
        await store.purge_expired(self.db)
        return {}

    def facts(self) -> dict[str, Any]:
        return {"report_runs": self.report_runs}

    async def run_due(self, now: datetime | None = None) -> list[str]:
        """Run every report whose moment has come; the ids of the runs this replica made."""
        now = now or clock.now()
        made = []
        for report in await store.due_reports(self.db, now):
            assert report.next_run_at is not None
            due = report.next_run_at
            following = next_run(report.schedule, report.timezone, max(now, due))
            window = range_window(report.range, due, zone_of(report.timezone))
            run_id = await store.claim_run(self.db, report, due, "schedule", window, following)
            if run_id is not None:
                await self.execute(report, run_id, window)
                made.append(run_id)
        return made

    async def start_now(self, report: Report) -> tuple[str, tuple[datetime, datetime]]:
        """Claim a manual run at this moment: its id and window; the caller executes it."""
        now = clock.now()
        window = range_window(report.range, now, zone_of(report.timezone))
        run_id = await store.claim_run(self.db, report, now, "manual", window, None)
        if run_id is None:  # the same microsecond twice
            raise RuntimeError("a run of this report started at this very moment")
        return run_id, window

    async def execute(self, report: Report, run_id: str, window: tuple[datetime, datetime]) -> None:
        files: list[dict[str, Any]] = []
        delivery: dict[str, Any] = {}
        error: str | None = None
        try:
            tz = zone_of(report.timezone)
            asker = Asker(
                self.db, Scope.of(report.workspace_id), TimeWindow(*window, tz), report.filter
            )
            doc = Rendered(report.name, window[0], window[1], report.timezone)
            # the analytics read from a standby when one has replayed the run's moment; the
            # run's own rows (claim, files, audit) are written on the primary
            with self.db.standby_reads():
                doc.tables = await render_tables(report, asker)
            for fmt in report.formats:
                files.append(
                    {
                        "format": fmt.value,
                        "filename": file_name(report, window[0], fmt),
                        "media_type": MEDIA_TYPES[fmt],
                        "content": encode(doc, fmt),
                    }
                )
        except Exception as exc:
            log.exception("report %s run %s failed to render", report.id, run_id)
            error = f"rendering failed ({type(exc).__name__})"
        if error is None and report.recipients:
            delivery["email"] = await self._mail(report, files, window)
        await store.finish_run(self.db, report.workspace_id, run_id, files, error, delivery)
        async with self.db.write() as conn:
            data = {
                "reportId": report.id,
                "reportName": report.name,
                "runId": run_id,
                "status": "failed" if error else "succeeded",
                "rangeStart": window[0].isoformat(),
                "rangeEnd": window[1].isoformat(),
                "files": [
                    {
                        "format": f["format"],
                        "filename": f["filename"],
                        "sizeBytes": len(f["content"]),
                        "path": f"/v1/reports/runs/{run_id}/file?format={f['format']}",
                    }
                    for f in files
                ],
                "error": error,
            }
            if report.webhook_ids:
                await enqueue(conn, report.workspace_id, report.webhook_ids, WEBHOOK_EVENT, data)
            await record_audit(
                conn,
                AuditRecord(
                    workspace_id=report.workspace_id,
                    action="execute",
                    resource_type="report",
                    resource_id=report.id,
                    outcome="failure" if error else "success",
                    details={**data, "delivery": delivery},
                ),
            )
        self.report_runs += 1

    async def _mail(
        self, report: Report, files: list[dict[str, Any]], window: tuple[datetime, datetime]
    ) -> dict[str, Any]:
        tz = zone_of(report.timezone)
        first = window[0].astimezone(tz).date()
        last = (window[1] - timedelta(microseconds=1)).astimezone(tz).date()
        days = first.isoformat() if first == last else f"{first.isoformat()} to {last.isoformat()}"
        subject = f"[tallyql] {report.name}: {days}"
        text = (
            f"{report.name}\n\nRange: {window[0].isoformat()} to {window[1].isoformat()} "
            f"(UTC, days in {report.timezone}).\nAttached: "
            + ", ".join(f["filename"] for f in files)
            + ".\n"
        )
        attachments = [
            Attachment(f["filename"], f["content"], f["media_type"].split(";")[0]) for f in files
        ]
        message = self.mailer.message(
            list(report.recipients), subject, text, attachments=attachments
        )
        last_error = ""
        for attempt in range(1, MAIL_ATTEMPTS + 1):
            try:
                await self.mailer.send(message)
                return {"status": "sent", "attempts": attempt, "recipients": len(report.recipients)}
            except MailError as exc:
                last_error = str(exc)
                if attempt < MAIL_ATTEMPTS:
                    await asyncio.sleep(self.mail_backoff_seconds * 2 ** (attempt - 1))
        return {"status": "failed", "attempts": MAIL_ATTEMPTS, "error": last_error}
