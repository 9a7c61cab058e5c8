"""A window that ends inside an hour: when no event lies between its end and the end of that
hour, the hour's rollup row answers the last, partial hour (no raw edge); once one does, the
raw edge is back and that event is not counted. (The window may end a little in the future:
ingest accepts timestamps up to a day ahead.)"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine

from tallyql.engine.compiler import Scope
from tallyql.engine.executor import quiet_until
from tests.conftest import Api
from tests.support.helpers import (
    check_planned_against_raw,
    planned_and_exact_percentile,
    workspace_id_of,
)

HOUR = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
"""The current hour (each test runs from 12:50 on, below): the probe is made only for windows
ending within the last hour. Not the hour the suite runs in: at 23:00 the rest of the hour is
the rest of the day, and the planner rightly reads the day's row instead of the hour's."""
END = HOUR + timedelta(minutes=40)


@pytest.fixture(autouse=True)
def at_ten_to_one() -> Iterator[None]:
    with time_machine.travel(HOUR + timedelta(minutes=50), tick=True):
        yield


WINDOW = {"start": (HOUR - timedelta(days=3)).isoformat(), "end": END.isoformat()}
QUERY = """query($r: TimeRangeInput!) {
  overview(range: $r) { totalRequests costUsd p95LatencyMs activeUsers }
  timeseries(metrics: [REQUESTS, COST_USD], range: $r, granularity: HOUR) {
    series { values } }
}"""


def _event(i: int, ts: datetime) -> dict[str, Any]:
    return {
        "id": f"q{i}",
        "timestamp": ts.isoformat(),
        "provider": "openai",
        "model": "gpt-4o-mini",
        "latency_ms": 100.0 + 17 * i,
        "input_tokens": 10 + i,
        "output_tokens": 5,
        "cost_usd": 0.001 * (1 + i % 4),
        "user_id": f"u{i % 3}",
    }


async def _ask(api: Api, key: str, plan_header: dict[str, str]) -> dict[str, Any]:
    response = await api.client.post(
        "/graphql",
        json={"query": QUERY, "variables": {"r": WINDOW}},
        headers={"Authorization": f"Bearer {key}", **plan_header},
    )
    body = response.json()
    assert "errors" not in body, body
    return body


def _last_piece(body: dict[str, Any]) -> set[str]:
    ends = set()
    for plan in body["extensions"]["plans"]:
        last = max(plan["pieces"], key=lambda p: p["end"])
        ends.add(last["grain"])
    return ends


async def test_quiet_last_hour_reads_the_hour_row(api: Api) -> None:
    key = await api.key()
    events = [_event(i, HOUR - timedelta(hours=30) + timedelta(minutes=37 * i)) for i in range(80)]
    events = [e for e in events if datetime.fromisoformat(e["timestamp"]) < END]
    events.append(_event(500, HOUR + timedelta(minutes=5)))  # inside the window's last hour
    assert (await api.ingest(key, events))["accepted"] == len(events)

    quiet = await _ask(api, key, {"X-Tallyql-Explain": "1"})
    assert _last_piece(quiet) == {"h"}, quiet["extensions"]["plans"]
    raw = await _ask(api, key, {"X-Tallyql-Plan": "raw"})
    start = datetime.fromisoformat(WINDOW["start"])
    # the overview's latency covers LLM calls (issue 23)
    p95 = await planned_and_exact_percentile(
        api.services, key, start, END, 0.95, {"kind": "llm_call"}
    )
    check_planned_against_raw(quiet["data"], raw["data"], {("overview", "p95LatencyMs"): p95})
    assert quiet["data"]["overview"]["totalRequests"] == len(events)
    last_hour = [e for e in events if datetime.fromisoformat(e["timestamp"]) >= HOUR]
    assert quiet["data"]["timeseries"]["series"][0]["values"][-1] == len(last_hour) >= 1

    # an event after the window's end, in the same hour: the hour row would count it
    assert (await api.ingest(key, [_event(501, END + timedelta(minutes=3))]))["accepted"] == 1
    busy = await _ask(api, key, {"X-Tallyql-Explain": "1"})
    assert _last_piece(busy) == {"raw"}
    assert busy["data"] == quiet["data"]


async def test_a_day_without_events_is_quiet(api: Api) -> None:
    """No event on the day of the window's end (on PostgreSQL not even a partition, two days
    ahead): the probe finds the rest of that hour quiet rather than failing."""
    key = await api.key()
    await api.ingest(key, [_event(0, HOUR - timedelta(days=3))])
    ws = await workspace_id_of(api.services, key)
    for end in (datetime.now(UTC), datetime.now(UTC) + timedelta(days=2)):
        if end.minute == end.second == end.microsecond == 0:
            end += timedelta(microseconds=1)  # a whole hour is never probed
        ceil = end.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        assert await quiet_until(api.services.db, Scope.of(ws), end) == ceil
