"""`repriceEvents`: reload prices, recompute stored costs, fix rollups and sessions, audit."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from tallyql.engine.query.filters import EventFilterSpec
from tallyql.engine.query.timerange import TimeWindow
from tallyql.ingest.pricing import NANO_PER_USD
from tallyql.services import Services
from tallyql.storage.audit import AuditRecord, record_audit
from tallyql.storage.price_overrides import Actor
from tallyql.storage.reprice import RepriceReport, reprice_events


def _spec_details(spec: EventFilterSpec) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in asdict(spec).items():
        if value not in ((), None, []):
            out[name] = list(value) if isinstance(value, tuple | list) else value
    return out


async def reprice(
    services: Services,
    workspace_id: int,
    window: TimeWindow,
    spec: EventFilterSpec,
    actor: Actor,
    batch_size: int | None = None,
) -> tuple[RepriceReport, str]:
    """Reprice a window of a workspace's events; returns the report and the audit event id."""
    await services.prices.refresh()  # another replica may have changed prices
    pricer = services.ingest.pricer
    kwargs = {"batch_size": batch_size} if batch_size else {}
    report = await reprice_events(
        services.db, pricer.cost, workspace_id, window.start, window.end, spec, **kwargs
    )
    details = {
        "start": window.start.isoformat(),
        "end": window.end.isoformat(),
        "filter": _spec_details(spec),
        "scanned": report.scanned,
        "changed": report.changed,
        "newly_priced": report.newly_priced,
        "still_unpriced": report.still_unpriced,
        "delta_usd": report.delta_nanousd / NANO_PER_USD,
        "days_rebuilt": [d.isoformat() for d in report.days],
    }
    async with services.db.write() as conn:
        audit_id = await record_audit(
            conn,
            AuditRecord(
                workspace_id=workspace_id,
                action="execute",
                resource_type="reprice",
                actor_id=actor.id,
                actor_type=actor.type,
                source_ip=actor.source_ip,
                details=details,
            ),
        )
    return report, audit_id
