"""Price overrides and repricing through the API, and the cost an override gives by hand
(shared by test_price_overrides, test_reprice and test_session_digests)."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from tests.conftest import Api

CREATE = """
mutation($input: PriceOverrideInput!) {
  createPriceOverride(input: $input) {
    priceOverride { id provider model modelIsRegex inputPerMtok outputPerMtok cacheReadPerMtok
                    effectiveFrom effectiveUntil }
    userErrors { field message code }
  }
}"""


def override_nano(
    rates: tuple[float, float, float | None, float | None, float | None],
    inp: int,
    out: int,
    cr: int = 0,
    cw: int = 0,
    rs: int = 0,
) -> int:
    """USD/MTok rates (input, output, cache read, cache write, reasoning) applied by hand."""
    r_in, r_out, r_cr, r_cw, r_rs = (None if r is None else Decimal(str(r)) for r in rates)
    assert r_in is not None and r_out is not None
    usd_per_mtok = (
        r_in * (inp - cr - cw)
        + (r_cr if r_cr is not None else r_in) * cr
        + (r_cw if r_cw is not None else r_in) * cw
        + r_out * (out - rs)
        + (r_rs if r_rs is not None else r_out) * rs
    )
    return int((usd_per_mtok * 1000).to_integral_value(rounding=ROUND_HALF_EVEN))


async def create(api: Api, key: str, **fields: Any) -> dict[str, Any]:
    payload = (await api.data(key, CREATE, {"input": fields}))["createPriceOverride"]
    assert payload["userErrors"] == [], payload
    return payload["priceOverride"]


REPRICE = """
mutation($range: TimeRangeInput!, $filter: EventFilter) {
  repriceEvents(range: $range, filter: $filter) {
    scanned changed newlyPriced stillUnpriced costDeltaUsd batches daysRebuilt auditEventId
  }
}"""
