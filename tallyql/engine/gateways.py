"""Gateways: per gateway its requests, distinct callers, bandwidth and error rate (events that
went through no gateway are left out)."""

from __future__ import annotations

from enum import Enum

from tallyql.engine.analytics import Asker
from tallyql.engine.query.registry import Dimension, Metric
from tallyql.engine.ranking import RankedPage, grouped, page, rank


class GatewayOrder(Enum):
    REQUESTS = "REQUESTS"
    BANDWIDTH = "BANDWIDTH"
    ERROR_RATE = "ERROR_RATE"
    UNIQUE_CALLERS = "UNIQUE_CALLERS"
    COST = "COST"


GATEWAY_METRICS = (
    Metric.REQUESTS,
    Metric.ERRORS,
    Metric.ERROR_RATE,
    Metric.BLOCKED,
    Metric.REQUEST_BYTES,
    Metric.RESPONSE_BYTES,
    Metric.UNIQUE_CALLERS,
    Metric.AVG_LATENCY_MS,
    Metric.COST_USD,
)
BANDWIDTH = "bandwidth"


async def gateways_page(
    asker: Asker, order: GatewayOrder, descending: bool, first: int, after: str | None
) -> RankedPage:
    """Keys (gateway,); values by Metric, plus "bandwidth" (request + response bytes) and the
    order's value under the GatewayOrder member."""
    groups = []
    for keys, values in await grouped(asker, (Dimension.GATEWAY,), GATEWAY_METRICS):
        if keys[0] is None:
            continue
        bandwidth = (values.get(Metric.REQUEST_BYTES) or 0.0) + (
            values.get(Metric.RESPONSE_BYTES) or 0.0
        )
        figures = {**values, BANDWIDTH: bandwidth}
        figures[order] = {
            GatewayOrder.REQUESTS: values.get(Metric.REQUESTS),
            GatewayOrder.BANDWIDTH: bandwidth,
            GatewayOrder.ERROR_RATE: values.get(Metric.ERROR_RATE),
            GatewayOrder.UNIQUE_CALLERS: values.get(Metric.UNIQUE_CALLERS),
            GatewayOrder.COST: values.get(Metric.COST_USD),
        }[order]
        groups.append((keys, figures))
    ranked = rank(groups, order, descending)
    return page(ranked, order, descending, first, after, f"gw:{order.value}:{int(descending)}")
