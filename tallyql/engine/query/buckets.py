"""Time buckets in the caller's IANA zone, and the SQL that puts a time into its bucket.

Bucket starts are computed here in Python (local midnight, Monday-started weeks, months;
DST days of 23 and 25 hours come out right). In SQL a time is an integer T of epoch seconds
(an event's `ts`, or a rollup row's period start), and its bucket index is (every number a
bound parameter; those that move with the window are named, `Bucketing.params`, so that a
statement built for one window serves the next window of the same `shape`):
  MINUTE, HOUR      (T - b0) / step
  DAY, WEEK         (T + offset(T) - local(b0)) / step, offset(T) a CASE over the DST
                    transitions inside the window (usually none or one)
  MONTH, QUARTER, YEAR   a CASE over the bucket starts (a handful)
All arithmetic is on non-negative integers, so SQLite's and PostgreSQL's integer division
agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import BigInteger, ColumnElement, bindparam, case, literal

from tallyql.engine.query.timerange import TimeWindow, local_floor
from tallyql.storage.types import EPOCH

MAX_BUCKETS = 2_000


class Granularity(Enum):
    AUTO = "AUTO"
    MINUTE = "MINUTE"
    HOUR = "HOUR"
    DAY = "DAY"
    WEEK = "WEEK"
    MONTH = "MONTH"
    QUARTER = "QUARTER"
    YEAR = "YEAR"


FIXED_STEP = {Granularity.MINUTE: 60, Granularity.HOUR: 3600}
LOCAL_STEP = {Granularity.DAY: 86400, Granularity.WEEK: 7 * 86400}


class BucketError(ValueError):
    """Too many buckets for the window (BAD_USER_INPUT)."""


def _int(value: int) -> ColumnElement[int]:
    return literal(value, BigInteger)


def _named(name: str, value: int) -> ColumnElement[int]:
    """A number that moves with the window: bound under a fixed name (`Bucketing.params`)."""
    return bindparam(name, value, type_=BigInteger)


def resolve_granularity(granularity: Granularity, window: TimeWindow) -> Granularity:
    if granularity is Granularity.AUTO:
        return Granularity.HOUR if window.duration <= timedelta(days=2) else Granularity.DAY
    return granularity


def epoch_seconds(value: datetime) -> int:
    return int((value - EPOCH).total_seconds())


def _local_start(value: datetime, granularity: Granularity, tz: ZoneInfo) -> datetime:
    """The local start of the bucket holding `value` (naive local wall time)."""
    return local_floor(value.astimezone(tz).replace(tzinfo=None), granularity.value)


def _next_local(local: datetime, granularity: Granularity) -> datetime:
    if granularity is Granularity.DAY:
        return local + timedelta(days=1)
    if granularity is Granularity.WEEK:
        return local + timedelta(days=7)
    months = {Granularity.MONTH: 1, Granularity.QUARTER: 3, Granularity.YEAR: 12}[granularity]
    month = local.month - 1 + months
    return local.replace(year=local.year + month // 12, month=month % 12 + 1)


def _to_utc(local: datetime, tz: ZoneInfo) -> datetime:
    return local.replace(tzinfo=tz).astimezone(UTC)


def _offset(instant: datetime, tz: ZoneInfo) -> int:
    delta = instant.astimezone(tz).utcoffset()
    return int(delta.total_seconds()) if delta else 0


@dataclass(frozen=True)
class Bucketing:
    """The buckets of a window at a granularity; `starts` are aware UTC instants."""

    granularity: Granularity
    tz: ZoneInfo
    starts: tuple[datetime, ...]
    start: datetime
    """The window's start (the first bucket may begin earlier)."""
    end: datetime
    transitions: tuple[tuple[int, int], ...]
    """(epoch second from which, UTC offset) for every offset change in the window."""

    @property
    def count(self) -> int:
        return len(self.starts)

    def boundaries(self) -> list[datetime]:
        """Every bucket start after the first (where one bucket ends and the next begins)."""
        return list(self.starts[1:])

    def index_expr(self, t: ColumnElement[int]) -> ColumnElement[int]:
        """The bucket index of integer epoch seconds `t` (within the window)."""
        g = self.granularity
        values = self.params
        if g in FIXED_STEP:
            return (t - _named("b0", values["b0"])) // _int(FIXED_STEP[g])
        if g in LOCAL_STEP:
            local0 = _named("local0", values["local0"])
            return (t + self.offset_expr(t) - local0) // _int(LOCAL_STEP[g])
        if self.count == 1:
            return _int(0)
        whens = [(t < _named(f"bs{i}", values[f"bs{i}"]), _int(i)) for i in range(self.count - 1)]
        return case(*whens, else_=_int(self.count - 1))

    def offset_expr(self, t: ColumnElement[int]) -> ColumnElement[int]:
        """The zone's UTC offset in seconds at epoch seconds `t`."""
        values = self.params
        last = len(self.transitions) - 1
        if not last:
            return _named("off0", values["off0"])
        whens = [
            (t < _named(f"at{i + 1}", values[f"at{i + 1}"]), _named(f"off{i}", values[f"off{i}"]))
            for i in range(last)
        ]
        return case(*whens, else_=_named(f"off{last}", values[f"off{last}"]))

    @property
    def _cased(self) -> bool:
        """Buckets of unequal length (months, quarters, years): a CASE over their starts."""
        return self.granularity not in FIXED_STEP and self.granularity not in LOCAL_STEP

    @property
    def shape(self) -> tuple[Any, ...]:
        """What the SQL of `index_expr` and `offset_expr` depends on besides `params`."""
        return (self.granularity, len(self.transitions), self.count if self._cased else None)

    @cached_property
    def params(self) -> dict[str, int]:
        """The numbers `index_expr` and `offset_expr` bind by name (read, never changed):
        the first bucket's start (b0, in UTC; local0, in local time), every later bucket
        start (bs0, bs1, ...: month, quarter and year buckets), and the zone's offsets (off0,
        off1, ...) with the instants from which they hold (at1, at2, ...)."""
        b0 = epoch_seconds(self.starts[0])
        out = {"b0": b0, "local0": b0 + _offset(self.starts[0], self.tz)}
        if self._cased:
            for i, start in enumerate(self.starts[1:]):
                out[f"bs{i}"] = epoch_seconds(start)
        for i, (since, offset) in enumerate(self.transitions):
            if i:
                out[f"at{i}"] = since
            out[f"off{i}"] = offset
        return out

    @property
    def constant(self) -> bool:
        """One bucket: every row falls in bucket 0."""
        return (
            self.count == 1
            and self.granularity not in FIXED_STEP
            and (self.granularity not in LOCAL_STEP)
        )

    def index_of(self, instant: datetime) -> int:
        """The bucket index of an instant, in Python (for tests and merging)."""
        index = 0
        for i, start in enumerate(self.starts):
            if instant >= start:
                index = i
        return index


FIXED_ZONES = frozenset(
    {"UTC", "UCT", "GMT", "GMT0", "GMT+0", "GMT-0", "Greenwich", "Universal", "Zulu"}
)
"""Zone names of a fixed offset (besides Etc/*): they have no transitions to look for."""
MAX_ZONED_WINDOW = timedelta(days=36_525)
"""The longest window in a zone whose offset changes (100 years): its transitions are found
day by day (a window from year 1 to 9999 would take seconds); fixed zones take any window."""


def fixed_offset(tz: ZoneInfo) -> bool:
    key = tz.key or ""
    return key in FIXED_ZONES or key.startswith("Etc/")


def _transitions(start: datetime, end: datetime, tz: ZoneInfo) -> tuple[tuple[int, int], ...]:
    """Offset changes between start and end, found day by day and refined to the second
    (zones change their offset at most once a day)."""
    result = [(epoch_seconds(start), _offset(start, tz))]
    if fixed_offset(tz):
        return tuple(result)
    if end - start > MAX_ZONED_WINDOW:
        raise BucketError(
            f"a window in {tz.key} spans at most 100 years (its daylight saving changes are "
            "looked up day by day); use UTC for longer windows"
        )
    probe = start
    step = timedelta(days=1)
    while probe < end:
        nxt = min(probe + step, end)
        if _offset(nxt, tz) != _offset(probe, tz):
            lo, hi = probe, nxt  # offset(lo) != offset(hi): bisect to the exact second
            while hi - lo > timedelta(seconds=1):
                mid = lo + (hi - lo) / 2
                if _offset(mid, tz) == _offset(lo, tz):
                    lo = mid
                else:
                    hi = mid
            hi = hi.replace(microsecond=0)
            result.append((epoch_seconds(hi), _offset(hi, tz)))
        probe = nxt
    return tuple(result)


def make_bucketing(window: TimeWindow, granularity: Granularity) -> Bucketing:
    granularity = resolve_granularity(granularity, window)
    tz = window.tz
    if granularity in FIXED_STEP:
        step = FIXED_STEP[granularity]
        first = _to_utc(_local_start(window.start, granularity, tz), tz)
        if first > window.start:  # a DST gap moved the local start forward
            first -= timedelta(seconds=step)
        count = -(-int((window.end - first).total_seconds()) // step)
        if count > MAX_BUCKETS:
            raise BucketError(
                f"{count} {granularity.value.lower()} buckets; ask for at most {MAX_BUCKETS}"
            )
        starts = tuple(first + timedelta(seconds=step * i) for i in range(max(count, 1)))
    else:
        local = _local_start(window.start, granularity, tz)
        starts_list = [_to_utc(local, tz)]
        while True:
            local = _next_local(local, granularity)
            nxt = _to_utc(local, tz)
            if nxt >= window.end:
                break
            starts_list.append(nxt)
            if len(starts_list) > MAX_BUCKETS:
                raise BucketError(f"more than {MAX_BUCKETS} buckets; use a coarser granularity")
        starts = tuple(starts_list)
    transitions = _transitions(starts[0], window.end, tz)
    return Bucketing(granularity, tz, starts, window.start, window.end, transitions)


def single_bucket(window: TimeWindow) -> Bucketing:
    """No time grouping: the whole window is bucket 0."""
    return Bucketing(
        Granularity.AUTO,
        window.tz,
        (window.start,),
        window.start,
        window.end,
        _transitions(window.start, window.end, window.tz),
    )
