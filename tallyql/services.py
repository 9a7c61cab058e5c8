"""The running parts of one tallyql process, started and stopped together."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

from tallyql.alerts.scheduler import AlertScheduler
from tallyql.auth.keys import KeyService
from tallyql.budgets.monitor import BudgetMonitor
from tallyql.config import Settings
from tallyql.costs.book import PriceBook, PriceRefresh
from tallyql.heartbeat import HeartbeatJob
from tallyql.imports.sync import ProviderSync
from tallyql.ingest.pricing import Pricer
from tallyql.ingest.service import IngestService
from tallyql.live.service import LiveService
from tallyql.mail.smtp import Mailer, SmtpServer
from tallyql.observability import Metrics
from tallyql.reports.runner import ReportRunner
from tallyql.retention import RetentionJob
from tallyql.storage.audit import block_audit_statements
from tallyql.storage.database import Database
from tallyql.storage.ingest.batch import batches_for
from tallyql.storage.ingest.writer import Contributor, Writer
from tallyql.storage.jobs import PeriodicJob
from tallyql.storage.migrate import upgrade
from tallyql.storage.rollups.compaction import RUN_SPACING, CompactionJob
from tallyql.storage.rollups.folds import staging_statements
from tallyql.storage.rollups.sessions import session_statements
from tallyql.storage.standbys import StandbyChecks
from tallyql.webhooks.dispatcher import RetryPolicy, WebhookDispatcher

log = logging.getLogger(__name__)

WRITER_CONTRIBUTORS: tuple[Contributor, ...] = (
    staging_statements,
    block_audit_statements,
    session_statements,
)
"""The statements the server's writer runs in each batch's transaction, in order (the benches
that profile the writer run the same). Rollups first: the session upserts lock rows that a
concurrent batch may need, so they come last, just before the commit."""


@dataclass
class LiveComponents:
    """Live bus, webhook dispatcher, budget monitor and alert scheduler (started together: the
    monitor and the scheduler publish on the bus and notify through the dispatcher)."""

    service: LiveService
    webhooks: WebhookDispatcher
    budgets: BudgetMonitor
    alerts: AlertScheduler


@dataclass
class Services:
    settings: Settings
    db: Database
    writer: Writer
    keys: KeyService
    ingest: IngestService
    metrics: Metrics
    started_at: datetime
    prices: PriceBook = field(default_factory=PriceBook)
    """Every workspace's price overrides, in memory (used at ingest and by repricing)."""
    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Each background job's last run, as shown by /health."""
    retention: RetentionJob | None = None
    """Purges expired data (see tallyql/retention.py); its loop runs as a background job."""
    live: LiveComponents | None = None
    """Live bus, webhook dispatcher, budget monitor and alert scheduler (`start_live`)."""

    provider_sync: ProviderSync | None = None
    """Imports each provider connection's activity daily (tallyql/imports/)."""
    report_runner: ReportRunner | None = None
    """Runs scheduled reports when due, and on demand (tallyql/reports/)."""
    heartbeat: HeartbeatJob | None = None
    """Records this process's health in the database for health alert rules."""

    @cached_property
    def mailer(self) -> Mailer:
        """Email through TALLYQL_SMTP_URL (unconfigured when it is empty)."""
        s = self.settings
        server = SmtpServer.parse(s.smtp_url) if s.smtp_url else None
        return Mailer(server, s.mail_from, s.webhook_timeout_seconds)

    def spawn(self, name: str, job: Coroutine[Any, Any, None]) -> None:
        """Run a background task for the life of the process."""
        self.tasks[name] = asyncio.create_task(job, name=f"tallyql-{name}")

    def start(self, job: PeriodicJob) -> None:
        """Run a periodic job for the life of the process; an interval of 0 or less turns it
        off (its report then stays out of /health)."""
        if job.interval > 0:
            self.spawn(job.name, job.run_forever())

    def background_status(self) -> dict[str, bool]:
        return {name: not task.done() for name, task in self.tasks.items()}

    def job_reports(self) -> dict[str, dict[str, Any]]:
        reports = dict(self.reports)
        if self.live is not None:
            reports["live"] = {**self.live.service.report(), "ok": True}
        return reports

    def degraded_reasons(self) -> list[str]:
        """Why this process's jobs are not well, as /health says: a job that keeps failing,
        falls behind or has quarantined a workspace, and a background task that stopped."""
        reasons = [
            f"{name}: {report['degraded']}"
            for name, report in self.job_reports().items()
            if report.get("degraded")
        ]
        tasks = {"writer": self.writer.alive, **self.background_status()}
        stopped = [f"{name}: background task stopped" for name, ok in tasks.items() if not ok]
        return reasons + stopped

    async def stop(self) -> None:
        for task in self.tasks.values():
            task.cancel()
        for name, task in self.tasks.items():
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:
                log.exception("background job %s failed while stopping", name)
        await self.writer.stop()
        await self.db.dispose()


async def start_services(
    settings: Settings, migrate: bool = True, metrics: Metrics | None = None
) -> Services:
    db = Database(
        settings.resolved_database_url,
        pool_size=settings.db_pool_size,
        statement_timeout=settings.db_statement_timeout_seconds,
        workspace_share=settings.db_workspace_share,
        read_urls=settings.read_url_list,
        read_wait_ms=settings.read_wait_ms,
        read_max_lag_seconds=settings.read_max_lag_seconds,
    )
    if migrate:
        await upgrade(db)
    metrics = metrics or Metrics()
    writer = Writer(
        batches_for(db, settings.writer_connections),
        contributors=WRITER_CONTRIBUTORS,
        max_queue_events=settings.writer_queue_events,
        max_batch_events=settings.writer_batch_events,
        observer=metrics.observe_batch,
    )
    writer.start()
    if db.standbys is not None:
        # the first round before serving: requests find each standby's state known
        await db.standbys.check_all()
    prices = PriceBook(db)
    await prices.refresh()
    ingest = IngestService(
        writer,
        Pricer(overrides=prices),
        observer=metrics.observe_ingest,
        max_event_age=timedelta(days=settings.event_age_days),
    )
    services = Services(
        settings=settings,
        db=db,
        writer=writer,
        keys=KeyService(db, settings.key_cache_seconds),
        ingest=ingest,
        metrics=metrics,
        started_at=datetime.now(UTC),
        prices=prices,
    )
    services.start(PriceRefresh(prices, settings.price_refresh_seconds, services.reports))
    services.retention = RetentionJob(
        db, settings, services.reports, getattr(writer.batches, "partitions", None)
    )
    services.start(services.retention)
    if db.dialect.staged_deltas:
        services.start(
            CompactionJob(
                db,
                settings.rollup_compaction_seconds,
                services.reports,
                activity=lambda: writer.stats.batches,
                run_spacing=RUN_SPACING,
            )
        )
    if db.standbys is not None:
        metrics.watch_standbys(db.standbys)
        services.start(StandbyChecks(db.standbys, services.reports))
    services.heartbeat = HeartbeatJob(
        db, writer, services.degraded_reasons, settings.heartbeat_seconds, services.reports
    )
    services.start(services.heartbeat)
    services.live = start_live(services)
    services.report_runner = ReportRunner(
        db, services.mailer, settings.report_poll_seconds, services.reports
    )
    services.start(services.report_runner)
    services.provider_sync = ProviderSync(
        db,
        ingest,
        settings.openrouter_base_url,
        settings.max_batch_events,
        settings.provider_sync_poll_seconds,
        services.reports,
    )
    services.start(services.provider_sync)
    return services


def start_live(services: Services) -> LiveComponents:
    settings = services.settings
    live = LiveService(
        services.db,
        queue_size=settings.live_queue_size,
        delivery_share=settings.live_delivery_share,
        max_age=settings.live_max_age_seconds,
        send_buffer_bytes=int(settings.live_send_buffer_mb * 1024 * 1024),
        group_refresh_seconds=settings.live_group_refresh_seconds,
        audit_poll_seconds=settings.live_audit_poll_seconds,
        cross_replica=settings.live_cross_replica,
        reports=services.reports,
        ingest_pressure=lambda: services.writer.saturated,
    )
    services.writer.add_listener(live.bus.on_commit)
    dispatcher = WebhookDispatcher(
        services.db,
        RetryPolicy(
            max_attempts=settings.webhook_max_attempts,
            backoff_seconds=settings.webhook_backoff_seconds,
            backoff_max_seconds=settings.webhook_backoff_max_seconds,
        ),
        timeout_seconds=settings.webhook_timeout_seconds,
        poll_seconds=settings.webhook_poll_seconds,
        allow_private=settings.webhook_allow_private,
        mailer=services.mailer,
        reports=services.reports,
    )
    budgets = BudgetMonitor(
        services.db,
        live.bus,
        dispatcher,
        interval_seconds=settings.budget_interval_seconds,
        debounce_seconds=settings.budget_debounce_seconds,
        reports=services.reports,
    )
    live.bus.observers.append(budgets.on_batch)
    alerts = AlertScheduler(
        services.db,
        live.bus,
        dispatcher,
        interval_seconds=settings.alert_interval_seconds,
        heartbeat_seconds=settings.heartbeat_seconds,
        reports=services.reports,
    )
    live.start(services.spawn)
    for job in (dispatcher, budgets, alerts):
        services.start(job)
    return LiveComponents(live, dispatcher, budgets, alerts)
