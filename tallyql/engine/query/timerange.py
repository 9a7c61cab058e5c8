"""Time windows: rolling presets, period-to-date presets and custom ranges, in an IANA zone.

A window is half-open, [start, end), with aware UTC bounds and the caller's zone kept for
bucketing. Weeks start on Monday. The previous period of a window is the window of the same
length just before it; for a period-to-date preset it is the previous period's start plus the
same elapsed time (THIS_MONTH on the 10th at noon compares with the previous month's first
9.5 days).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tallyql.clock import clock


class Preset(Enum):
    LAST_1H = "LAST_1H"
    LAST_24H = "LAST_24H"
    LAST_7D = "LAST_7D"
    LAST_30D = "LAST_30D"
    LAST_90D = "LAST_90D"
    TODAY = "TODAY"
    THIS_WEEK = "THIS_WEEK"
    THIS_MONTH = "THIS_MONTH"
    THIS_QUARTER = "THIS_QUARTER"
    THIS_YEAR = "THIS_YEAR"


ROLLING: dict[Preset, timedelta] = {
    Preset.LAST_1H: timedelta(hours=1),
    Preset.LAST_24H: timedelta(hours=24),
    Preset.LAST_7D: timedelta(days=7),
    Preset.LAST_30D: timedelta(days=30),
    Preset.LAST_90D: timedelta(days=90),
}


class TimeRangeError(ValueError):
    """A time range the caller got wrong (BAD_USER_INPUT)."""


def zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise TimeRangeError(
            f"unknown time zone {name!r}; use an IANA name such as Europe/Paris"
        ) from None


def local_floor(local: datetime, unit: str) -> datetime:
    """The start of the MINUTE, HOUR, DAY, WEEK (Monday), MONTH, QUARTER or YEAR holding a
    naive local wall time."""
    if unit == "MINUTE":
        return local.replace(second=0, microsecond=0)
    if unit == "HOUR":
        return local.replace(minute=0, second=0, microsecond=0)
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if unit == "DAY":
        return day
    if unit == "WEEK":
        return day - timedelta(days=day.weekday())
    if unit == "MONTH":
        return day.replace(day=1)
    if unit == "QUARTER":
        return day.replace(month=(day.month - 1) // 3 * 3 + 1, day=1)
    if unit == "YEAR":
        return day.replace(month=1, day=1)
    raise AssertionError(unit)


def period_start(preset: Preset, local_now: datetime) -> datetime:
    """Local start of the period that a period-to-date preset covers."""
    if preset is Preset.TODAY:
        return local_floor(local_now, "DAY")
    if preset.value.startswith("THIS_"):
        return local_floor(local_now, preset.value.removeprefix("THIS_"))
    raise AssertionError(preset)


def previous_period_start(preset: Preset, local_start: datetime) -> datetime:
    if preset is Preset.TODAY:
        return local_start - timedelta(days=1)
    if preset is Preset.THIS_WEEK:
        return local_start - timedelta(days=7)
    if preset is Preset.THIS_MONTH:
        year, month = (
            (local_start.year, local_start.month - 1)
            if local_start.month > 1
            else (
                local_start.year - 1,
                12,
            )
        )
        return local_start.replace(year=year, month=month)
    if preset is Preset.THIS_QUARTER:
        month = local_start.month - 3
        year = local_start.year
        if month < 1:
            month += 12
            year -= 1
        return local_start.replace(year=year, month=month)
    if preset is Preset.THIS_YEAR:
        return local_start.replace(year=local_start.year - 1)
    raise AssertionError(preset)


def _local(naive_local: datetime, tz: ZoneInfo) -> datetime:
    """Attach a zone to a wall-clock time and normalise (handles DST gaps)."""
    return naive_local.replace(tzinfo=tz).astimezone(UTC).astimezone(tz)


EARLIEST = datetime(1, 2, 1, tzinfo=UTC)
LATEST = datetime(9999, 12, 1, tzinfo=UTC)
"""Windows lie between these: a month from each edge of the calendar leaves room to round
to weeks and months and to shift by a zone's offset (datetime stops at years 1 and 9999)."""


@dataclass(frozen=True)
class TimeWindow:
    start: datetime
    end: datetime
    tz: ZoneInfo
    preset: Preset | None = None

    @property
    def duration(self) -> timedelta:
        return self.end - self.start

    def previous(self) -> TimeWindow:
        """The window just before, of the same length; TimeRangeError when it would begin
        before `EARLIEST` (the calendar's edge)."""
        try:
            if self.preset is not None and self.preset not in ROLLING:
                local_start = self.start.astimezone(self.tz).replace(tzinfo=None)
                prev_start = _local(previous_period_start(self.preset, local_start), self.tz)
                prev_end = min(prev_start + self.duration, self.start)
                window = TimeWindow(prev_start.astimezone(UTC), prev_end.astimezone(UTC), self.tz)
            else:
                window = TimeWindow(self.start - self.duration, self.start, self.tz)
        except (OverflowError, ValueError):
            window = None
        if window is None or window.start < EARLIEST:
            raise TimeRangeError(
                f"the previous period of this window would begin before {EARLIEST.date()}; "
                "ask for a later or shorter window"
            )
        return window


def resolve_window(
    preset: Preset | None,
    start: datetime | None,
    end: datetime | None,
    timezone: str | None,
    now: datetime | None = None,
) -> TimeWindow:
    tz = zone(timezone)
    now = (now or clock.now()).astimezone(UTC)
    if preset is not None:
        if start is not None or end is not None:
            raise TimeRangeError("give either preset or start/end, not both")
        if preset in ROLLING:
            return TimeWindow(now - ROLLING[preset], now, tz, preset)
        local_now = now.astimezone(tz).replace(tzinfo=None)
        local_start = _local(period_start(preset, local_now), tz)
        return TimeWindow(local_start.astimezone(UTC), now, tz, preset)
    if start is None or end is None:
        raise TimeRangeError("give a preset, or both start and end")
    for name, value in (("start", start), ("end", end)):
        if value.tzinfo is None:
            raise TimeRangeError(f"{name} must carry a UTC offset (Z or +hh:mm)")
    try:
        start, end = start.astimezone(UTC), end.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+14:00 is before year 1 in UTC
        raise TimeRangeError("start and end must lie within the years 1 to 9999 in UTC") from None
    if start < EARLIEST or end > LATEST:
        raise TimeRangeError(
            f"start and end must lie between {EARLIEST.date()} and {LATEST.date()} (UTC)"
        )
    if start >= end:
        raise TimeRangeError("start must be before end")
    return TimeWindow(start, end, tz, None)
