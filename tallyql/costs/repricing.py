"""`repriceEvents`: reload prices, recompute stored costs, fix rollups and sessions, audit."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from tallyql.costs.book import PriceBook
from tallyql.engine.filters import EventFilterSpec, filter_conditions
from tallyql.engine.timerange import TimeWindow
from tallyql.ingest.pricing import Pricer
from tallyql.money import to_usd
from tallyql.storage.audit import Actor, AuditRecord, record_audit
from tallyql.storage.database import Database
from tallyql.storage.reprice import RepriceReport, reprice_events
from tallyql.storage.tables import events


def _spec_details(spec: EventFilterSpec) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in asdict(spec).items():
        if value not in ((), None, []):
            out[name] = list(value) if isinstance(value, tuple | list) else value
    return out


async def reprice(
    db: Database,
    prices: PriceBook,
    pricer: Pricer,
    workspace_id: int,
    window: TimeWindow,
    spec: EventFilterSpec,
    actor: Actor,
    batch_size: int | None = None,
) -> tuple[RepriceReport, str]:
    """Reprice a window of a workspace's events; returns the report and the audit event id."""
    await prices.refresh()  # another replica may have changed prices
    kwargs = {"batch_size": batch_size} if batch_size else {}
    matching = filter_conditions(spec, events.c, db.dialect)
    report = await reprice_events(
        db,
        pricer.cost,
        workspace_id,
        window.start,
        window.end,
        spec.cost_sources,
        matching,
        **kwargs,
    )
    details = {
        "start": window.start.isoformat(),
        "end": window.end.isoformat(),
        "filter": _spec_details(spec),
        "scanned": report.scanned,
        "changed": report.changed,
        "newly_priced": report.newly_priced,
        "still_unpriced": report.still_unpriced,
        "delta_usd": to_usd(report.delta_nanousd),
        "days_rebuilt": [d.isoformat() for d in report.days],
    }
    async with db.write() as conn:
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
