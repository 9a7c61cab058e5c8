"""Starts the live features of a process: the bus (fed by the writer), the webhook
dispatcher, the budget monitor and the alert scheduler; keeps their /health reports."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tallyql.alerts.scheduler import AlertScheduler
from tallyql.budgets.monitor import BudgetMonitor
from tallyql.clock import clock
from tallyql.live.service import LiveService
from tallyql.webhooks.dispatcher import RetryPolicy, WebhookDispatcher

if TYPE_CHECKING:
    from tallyql.services import Services

REPORT_SECONDS = 5.0


@dataclass
class LiveComponents:
    service: LiveService
    webhooks: WebhookDispatcher
    budgets: BudgetMonitor
    alerts: AlertScheduler

    def reports(self) -> dict[str, dict[str, Any]]:
        def ago(moment: float | None) -> float | None:
            return None if moment is None else round(clock.timestamp() - moment, 1)

        return {
            "live": {**self.service.report(), "ok": True},
            "webhooks": {
                "sent": self.webhooks.sent,
                "failed_attempts": self.webhooks.failed_attempts,
                "ok": True,
            },
            "budgets": {
                "evaluations": self.budgets.evaluations,
                "limit_warnings": self.budgets.warnings,
                "last_run_seconds_ago": ago(self.budgets.last_run),
                "ok": True,
            },
            "alerts": {
                "evaluations": self.alerts.evaluations,
                "last_run_seconds_ago": ago(self.alerts.last_run),
                "ok": True,
            },
        }


def start_live(services: Services) -> LiveComponents:
    settings = services.settings
    live = LiveService(
        services.db,
        queue_size=settings.live_queue_size,
        delivery_share=settings.live_delivery_share,
        max_age=settings.live_max_age_seconds,
        group_refresh_seconds=settings.live_group_refresh_seconds,
        audit_poll_seconds=settings.live_audit_poll_seconds,
        cross_replica=settings.live_cross_replica,
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
    )
    budgets = BudgetMonitor(
        services.db,
        live.bus,
        dispatcher,
        interval_seconds=settings.budget_interval_seconds,
        debounce_seconds=settings.budget_debounce_seconds,
    )
    live.bus.observers.append(budgets.on_batch)
    alerts = AlertScheduler(
        services.db,
        live.bus,
        dispatcher,
        interval_seconds=settings.alert_interval_seconds,
        heartbeat_seconds=settings.heartbeat_seconds,
    )
    components = LiveComponents(live, dispatcher, budgets, alerts)
    live.start(services.spawn)
    services.spawn("webhooks", dispatcher.run())
    services.spawn("budgets", budgets.run())
    services.spawn("alerts", alerts.run())
    services.reports.update(components.reports())
    services.spawn("live-reports", _keep_reports(components, services.reports))
    return components


async def _keep_reports(components: LiveComponents, reports: dict[str, dict[str, Any]]) -> None:
    while True:
        await asyncio.sleep(REPORT_SECONDS)
        reports.update(components.reports())
