"""Questions at the calendar's edges are clear user errors, never INTERNAL_ERROR (issue 14,
section 5): `overview(previous)` near year 1 or 9999 overflowed datetime, and an export asking
for more buckets than allowed raised an uncaught error (HTTP 500)."""

from __future__ import annotations

from typing import Any

from tests.conftest import Api
from tests.support.helpers import llm

OVERVIEW = """query($r: TimeRangeInput!) {
  overview(range: $r) { totalRequests previous { totalRequests } } }"""


async def _overview(api: Api, key: str, start: str, end: str) -> dict[str, Any]:
    return await api.graphql(key, OVERVIEW, {"r": {"start": start, "end": end}})


async def test_overview_near_the_calendar_edges_is_a_clear_user_error(api: Api) -> None:
    key = await api.key()
    cases = [
        ("0001-01-01T00:00:00Z", "0001-01-02T00:00:00Z", "must lie between 0001-02-01 and"),
        ("9999-12-30T00:00:00Z", "9999-12-31T00:00:00Z", "must lie between 0001-02-01 and"),
        ("0001-01-01T00:00:00Z", "9999-12-31T00:00:00Z", "must lie between 0001-02-01 and"),
        ("0001-01-01T00:00:00+14:00", "0001-03-01T00:00:00Z", "within the years 1 to 9999"),
        ("0001-02-02T00:00:00Z", "0001-03-01T00:00:00Z", "previous period of this window"),
    ]
    for start, end, message in cases:
        body = await _overview(api, key, start, end)
        (error,) = body["errors"]
        assert error["extensions"]["code"] == "BAD_USER_INPUT", (start, end, error)
        assert message in error["message"], (start, end, error)


async def test_overview_inside_the_edges_is_computed(api: Api) -> None:
    key = await api.key()
    await api.ingest(key, [llm(f"e{i}") for i in range(3)])
    body = await _overview(api, key, "1500-01-01T00:00:00Z", "2500-01-01T00:00:00Z")
    assert "errors" not in body, body
    assert body["data"]["overview"] == {"totalRequests": 3, "previous": {"totalRequests": 0}}


async def test_an_export_with_too_many_buckets_is_a_400(api: Api) -> None:
    key = await api.key()
    response = await api.client.get(
        "/v1/export/timeseries",
        params={"preset": "LAST_7D", "granularity": "MINUTE", "metrics": "COST_USD"},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 400, response.text
    # 7 days of minutes, plus the one the window's end falls in unless it ends on a minute
    assert response.json()["error"]["message"] in {
        f"{n} minute buckets; ask for at most 2000" for n in (10080, 10081)
    }
