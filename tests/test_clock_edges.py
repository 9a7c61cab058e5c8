"""The time-sensitive answers with the server's clock (tallyql.clock) set to the moments where
"now" is most easily got wrong: 23:59:50 UTC, the last second of a month, and just after a DST
change in Europe/Paris (spring forward) and America/New_York (fall back, in the repeated hour).

The clock stands still in each test, so the server's "today" and "this month" are those of the
set moment; the expectations come from zoneinfo and tests/support/reference.py, not from the engine.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tallyql.clock import clock
from tallyql.config import Settings
from tallyql.engine.periods import Period, period_bounds
from tallyql.engine.timerange import Preset, resolve_window
from tests.conftest import Api
from tests.support.helpers import iso, llm
from tests.support.live_client import TRANSPORT_WS, live_server
from tests.support.live_support import expected_totals, ingest, make_key, mixed_events, open_live
from tests.support.reference import bucket_starts

MOMENTS = {
    "before-midnight": (datetime(2026, 6, 15, 23, 59, 50, tzinfo=UTC), "UTC"),
    "month-end": (datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC), "UTC"),
    # already 1 December in Paris: its month and day began an hour ago
    "month-end-paris": (datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC), "Europe/Paris"),
    # 03:30 CEST, half an hour after 02:00 CET became 03:00: today has 23 hours
    "dst-spring-paris": (datetime(2026, 3, 29, 1, 30, tzinfo=UTC), "Europe/Paris"),
    # 01:30 EST, the second 01:30 of the day: today has 25 hours
    "dst-fall-new-york": (datetime(2026, 11, 1, 6, 30, tzinfo=UTC), "America/New_York"),
}
OFFSETS = (
    timedelta(seconds=10),
    timedelta(minutes=20),
    timedelta(minutes=50),
    timedelta(minutes=95),
    timedelta(hours=3, minutes=7),
    timedelta(hours=7),
    timedelta(hours=23, minutes=30),
    timedelta(hours=25),
    timedelta(days=3),
    timedelta(days=12),
)
"""How long before the moment each event happened."""


def local_midnight(at: datetime, tz: ZoneInfo, *, first_of_month: bool = False) -> datetime:
    """The start of `at`'s local day (or month), in UTC: the wall clock's midnight in the zone
    (none of these zones changes its clocks at midnight)."""
    local = at.astimezone(tz)
    day = 1 if first_of_month else local.day
    return datetime(local.year, local.month, day, tzinfo=tz).astimezone(UTC)


@pytest.fixture(params=sorted(MOMENTS))
def moment(request: pytest.FixtureRequest) -> Iterator[tuple[datetime, str]]:
    at, tz = MOMENTS[request.param]
    with clock.pinned(at, tick=False):
        yield at, tz


def test_presets_and_periods_follow_the_clock(moment: tuple[datetime, str]) -> None:
    at, name = moment
    tz = ZoneInfo(name)
    assert clock.now() == at and clock.timestamp() == at.timestamp()
    today = resolve_window(Preset.TODAY, None, None, name)
    assert (today.start, today.end) == (local_midnight(at, tz), at)
    month = resolve_window(Preset.THIS_MONTH, None, None, name)
    assert (month.start, month.end) == (local_midnight(at, tz, first_of_month=True), at)
    last = resolve_window(Preset.LAST_24H, None, None, name)
    assert (last.start, last.end) == (at - timedelta(hours=24), at)
    start, end = period_bounds(Period.DAY, clock.now(), tz)  # the live "today" and budgets
    assert start == local_midnight(at, tz)
    assert end == local_midnight(start + timedelta(hours=26), tz)  # the next local midnight
    hours = (end - start) / timedelta(hours=1)
    assert hours == {(3, 29): 23, (11, 1): 25}.get((at.month, at.day), 24)


QUERY = """query($today: TimeRangeInput!, $month: TimeRangeInput!, $day: TimeRangeInput!) {
  today: overview(range: $today) { totalRequests }
  month: overview(range: $month) { totalRequests }
  day: overview(range: $day) { totalRequests }
  hours: timeseries(metrics: [REQUESTS], range: $today, granularity: HOUR) {
    buckets series { values } }
}"""


async def test_today_and_this_month_at_the_edges(api: Api) -> None:
    """Each moment in its own workspace, on one server (a server per moment costs seconds)."""
    for label, (at, name) in sorted(MOMENTS.items()):
        with clock.pinned(at, tick=False):
            await _check_today_and_this_month(api, label, at, name)


async def _check_today_and_this_month(api: Api, label: str, at: datetime, name: str) -> None:
    tz = ZoneInfo(name)
    key = await api.key(workspace=label)
    stamps = [at - offset for offset in OFFSETS]
    events = [llm(f"e{i}", timestamp=iso(ts)) for i, ts in enumerate(stamps)]
    assert (await api.ingest(key, events))["accepted"] == len(events)

    ranges = {
        "today": {"preset": "TODAY", "timezone": name},
        "month": {"preset": "THIS_MONTH", "timezone": name},
        "day": {"preset": "LAST_24H", "timezone": name},
    }
    got = await api.data(key, QUERY, ranges)
    starts = {
        "today": local_midnight(at, tz),
        "month": local_midnight(at, tz, first_of_month=True),
        "day": at - timedelta(hours=24),
    }
    for field, start in starts.items():
        want = sum(start <= ts < at for ts in stamps)
        assert got[field]["totalRequests"] == want, (label, field, want)
    assert 0 < got["today"]["totalRequests"] < len(events), label

    buckets = bucket_starts(starts["today"], at, "HOUR", tz)
    assert [datetime.fromisoformat(b) for b in got["hours"]["buckets"]] == buckets, label
    per_hour = [
        sum(b <= ts < (buckets[i + 1] if i + 1 < len(buckets) else at) for ts in stamps)
        for i, b in enumerate(buckets)
    ]
    assert got["hours"]["series"][0]["values"] == per_hour, label


async def test_live_today_just_before_midnight(settings: Settings, db_kind: str) -> None:
    """A COST_UPDATE subscription opened at 23:59:50 UTC (and in Paris, where the next day
    began at 22:00 UTC) counts today's events only: those since midnight in its zone."""
    at = MOMENTS["before-midnight"][0]
    with clock.pinned(at, tick=False):
        async with live_server(settings, db_kind) as server:
            key = await make_key(server)
            events = mixed_events("late", 14, now=at, spacing=timedelta(minutes=135))
            await ingest(server.url, key, events)
            for name in ("UTC", "Europe/Paris"):
                variables = {"types": ["COST_UPDATE"], "interval": 60, "timezone": name}
                async with open_live(server, TRANSPORT_WS, key, variables) as live:
                    first = await live.next()
                midnight = local_midnight(at, ZoneInfo(name))
                assert datetime.fromisoformat(first["todayStart"]) == midnight, name
                today = [e for e in events if datetime.fromisoformat(e["timestamp"]) >= midnight]
                assert 0 < len(today) < len(events) - 1, name  # yesterday's are left out
                assert first["today"] == expected_totals(today), name


def test_the_clock_runs_on_from_a_set_moment_and_comes_back() -> None:
    at = datetime(2026, 2, 28, 23, 59, 59, tzinfo=UTC)
    before = datetime.now(UTC)
    with clock.pinned(at):  # running on: later, but not by more than this test takes
        first = clock.now()
        assert at <= first < at + timedelta(seconds=30)
        with clock.pinned(at + timedelta(days=1), tick=False):
            assert clock.now() == clock.now() == at + timedelta(days=1)
        assert first <= clock.now() < at + timedelta(seconds=30)  # the outer setting again
        assert abs(clock.timestamp() - clock.now().timestamp()) < 1
    assert before <= clock.now() <= datetime.now(UTC)  # the system's time again
    with pytest.raises(ValueError):
        clock.set(datetime(2026, 1, 1))  # naive: which zone?
