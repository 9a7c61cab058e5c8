"""Calendar periods in an IANA zone: the local day, week (from Monday) or month that holds
an instant, as [start, end) in UTC. Boundaries are computed like the engine's day buckets
(engine/query/buckets.py), so a period is always a whole number of day buckets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import Enum
from zoneinfo import ZoneInfo


class Period(Enum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


def _to_utc(local: datetime, tz: ZoneInfo) -> datetime:
    return local.replace(tzinfo=tz).astimezone(UTC)


def period_bounds(period: Period, now: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
    local = now.astimezone(tz).replace(tzinfo=None)
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period is Period.DAY:
        start, end = day, day + timedelta(days=1)
    elif period is Period.WEEK:
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
    else:
        start = day.replace(day=1)
        end = start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    return _to_utc(start, tz), _to_utc(end, tz)
