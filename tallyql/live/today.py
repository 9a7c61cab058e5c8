"""Today's totals for a filter, read from the engine: the base that live COST_UPDATEs add
streamed events to."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from tallyql.engine.analytics import Asker
from tallyql.engine.compiler import Scope
from tallyql.engine.filters import EventFilterSpec
from tallyql.engine.registry import Metric
from tallyql.engine.timerange import TimeWindow
from tallyql.ingest.pricing import NANO_PER_USD
from tallyql.live.totals import Totals
from tallyql.storage.database import Database

TOTAL_METRICS: dict[str, Metric] = {
    "requests": Metric.REQUESTS,
    "errors": Metric.ERRORS,
    "input_tokens": Metric.INPUT_TOKENS,
    "output_tokens": Metric.OUTPUT_TOKENS,
    "cache_read_tokens": Metric.CACHE_READ_TOKENS,
    "cache_write_tokens": Metric.CACHE_WRITE_TOKENS,
    "reasoning_tokens": Metric.REASONING_TOKENS,
}


async def totals_between(
    db: Database, workspace_id: int, spec: EventFilterSpec, start: datetime, end: datetime
) -> Totals:
    asker = Asker(db, Scope.of(workspace_id), TimeWindow(start, end, ZoneInfo("UTC")), spec)
    metrics = (*TOTAL_METRICS.values(), Metric.COST_USD)
    result = await asker.run(metrics)
    values = {name: int(result.value((0,), m) or 0) for name, m in TOTAL_METRICS.items()}
    cost = result.value((0,), Metric.COST_USD) or 0.0
    return Totals(**values, cost_nanousd=round(cost * NANO_PER_USD))
