"""Time windows and buckets in IANA zones (pure, no database)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import BigInteger, literal, select
from sqlalchemy.dialects import sqlite

from tallyql.engine.query.buckets import BucketError, Granularity, make_bucketing, single_bucket
from tallyql.engine.query.timerange import Preset, TimeRangeError, TimeWindow, resolve_window

NY = ZoneInfo("America/New_York")
LITERAL = {"literal_binds": True}
BERLIN = ZoneInfo("Europe/Berlin")


def _window(start: datetime, end: datetime, tz: ZoneInfo) -> TimeWindow:
    return TimeWindow(start.astimezone(UTC), end.astimezone(UTC), tz)


def test_dst_days_have_23_and_25_hours() -> None:
    spring = make_bucketing(
        _window(datetime(2026, 3, 7, tzinfo=NY), datetime(2026, 3, 10, tzinfo=NY), NY),
        Granularity.DAY,
    )
    lengths = [(b - a).total_seconds() / 3600 for a, b in pairwise(spring.starts)]
    assert lengths == [24, 23]
    autumn = make_bucketing(
        _window(datetime(2026, 10, 31, tzinfo=NY), datetime(2026, 11, 3, tzinfo=NY), NY),
        Granularity.DAY,
    )
    lengths = [(b - a).total_seconds() / 3600 for a, b in pairwise(autumn.starts)]
    assert lengths == [24, 25]
    assert all(s.astimezone(NY).hour == 0 for s in autumn.starts)


def test_weeks_start_monday_and_months_follow_the_calendar() -> None:
    window = _window(
        datetime(2026, 1, 15, tzinfo=BERLIN), datetime(2026, 4, 2, tzinfo=BERLIN), BERLIN
    )
    weeks = make_bucketing(window, Granularity.WEEK)
    assert all(s.astimezone(BERLIN).weekday() == 0 for s in weeks.starts)
    assert weeks.starts[0].astimezone(BERLIN).date().isoformat() == "2026-01-12"
    months = make_bucketing(window, Granularity.MONTH)
    assert [s.astimezone(BERLIN).strftime("%m-%d %H") for s in months.starts] == [
        "01-01 00",
        "02-01 00",
        "03-01 00",
        "04-01 00",
    ]


@pytest.mark.parametrize("granularity", list(Granularity)[1:])
@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Europe/Berlin", "Asia/Kolkata"])
def test_sql_bucket_index_matches_python(granularity: Granularity, zone: str) -> None:
    tz = ZoneInfo(zone)
    start = datetime(2026, 10, 20, 3, 17, tzinfo=UTC)
    length = timedelta(hours=20) if granularity is Granularity.MINUTE else timedelta(days=40)
    if granularity in (Granularity.QUARTER, Granularity.YEAR):
        length = timedelta(days=500)
    window = TimeWindow(start, start + length, tz)
    bucketing = make_bucketing(window, granularity)
    db = sqlite3.connect(":memory:")
    t = start
    step = length / 997
    while t < window.end:
        seconds = int(t.timestamp())
        expr = bucketing.index_expr(literal(seconds, BigInteger))
        sql = str(select(expr).compile(dialect=sqlite.dialect(), compile_kwargs=LITERAL))
        (got,) = db.execute(sql).fetchone()
        local_start = bucketing.starts[got]
        assert local_start <= t, (t, local_start)
        if got + 1 < bucketing.count:
            assert t < bucketing.starts[got + 1]
        t += step


def test_auto_granularity_and_limits() -> None:
    now = datetime(2026, 11, 22, 12, tzinfo=UTC)
    two_days = TimeWindow(now - timedelta(days=2), now, ZoneInfo("UTC"))
    assert make_bucketing(two_days, Granularity.AUTO).granularity is Granularity.HOUR
    longer = TimeWindow(now - timedelta(days=2, seconds=1), now, ZoneInfo("UTC"))
    assert make_bucketing(longer, Granularity.AUTO).granularity is Granularity.DAY
    with pytest.raises(BucketError):
        make_bucketing(
            TimeWindow(now - timedelta(days=30), now, ZoneInfo("UTC")), Granularity.MINUTE
        )
    assert single_bucket(two_days).constant


def test_presets_and_previous_periods() -> None:
    now = datetime(2026, 11, 10, 15, 30, tzinfo=UTC)  # a Tuesday
    month = resolve_window(Preset.THIS_MONTH, None, None, "Europe/Berlin", now)
    assert month.start == datetime(2026, 10, 31, 23, 0, tzinfo=UTC)  # Nov 1 00:00 CET
    previous = month.previous()
    assert previous.start == datetime(2026, 9, 30, 22, 0, tzinfo=UTC)  # Oct 1 00:00 CEST
    assert previous.end - previous.start == month.end - month.start
    week = resolve_window(Preset.THIS_WEEK, None, None, "UTC", now)
    assert week.start == datetime(2026, 11, 9, tzinfo=UTC)
    today = resolve_window(Preset.TODAY, None, None, "America/New_York", now)
    assert today.start == datetime(2026, 11, 10, 5, tzinfo=UTC)
    quarter = resolve_window(Preset.THIS_QUARTER, None, None, "UTC", now)
    assert quarter.start == datetime(2026, 10, 1, tzinfo=UTC)
    assert quarter.previous().start == datetime(2026, 7, 1, tzinfo=UTC)
    rolling = resolve_window(Preset.LAST_24H, None, None, "UTC", now)
    assert rolling.previous() == TimeWindow(
        now - timedelta(days=2), now - timedelta(days=1), ZoneInfo("UTC")
    )
    year = resolve_window(Preset.THIS_YEAR, None, None, "UTC", now)
    assert year.previous().start == datetime(2025, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "args",
    [
        (None, None, None, "UTC"),
        (Preset.LAST_1H, datetime(2026, 1, 1, tzinfo=UTC), None, "UTC"),
        (None, datetime(2026, 1, 2, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC), "UTC"),
        (None, datetime(2026, 1, 1), datetime(2026, 1, 2), "UTC"),
        (Preset.LAST_1H, None, None, "Mars/Olympus"),
    ],
)
def test_bad_ranges(args: tuple) -> None:
    with pytest.raises(TimeRangeError):
        resolve_window(*args)
