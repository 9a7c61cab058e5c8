"""Exact session statistics from kept per-day digests: whole days are read once, edges always.

A window's sessions (those overlapping it) are the sessions whose last activity falls on one
of the window's whole UTC days, plus the rest (last activity in the partial days at either
end, or after the window for a session that began inside it). For each whole day, a digest
holds the day's sessions' measures (as NumPy arrays), their count and their exact sums,
together with the day's stamp from `session_day_versions` (storage/rollups/session_versions.py). A
digest whose stamp is unchanged is used as it is; the others, and the rest, are read in the
same snapshot, stamps first (a change committed between the two reads makes the digest newer
than its stamp, which only means it is read again next time). The values of ranks floor(h)
and ceil(h), h = q * (n - 1), are then picked from all the values with one partition per
measure, and each quantile interpolated between them (`tallyql.sketch.exact_quantile`).

Only filters that select sessions by their own columns (users, agents, sessions, providers
and models through session_models) are kept: a group's members or an event-level filter can
change without any session changing.
"""

from __future__ import annotations

import asyncio
import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from weakref import WeakKeyDictionary

import numpy as np
from sqlalchemy import ColumnElement, Integer, and_, func, literal_column, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from tallyql import sketch
from tallyql.engine.query.exact_stats import as_list
from tallyql.engine.query.filters import EventFilterSpec
from tallyql.engine.query.timerange import TimeWindow
from tallyql.storage import dialect as sqld
from tallyql.storage.database import Database
from tallyql.storage.dialect import Dialect
from tallyql.storage.rollups.session_versions import DAY_SECONDS
from tallyql.storage.tables import session_day_versions, sessions

MIN_WHOLE_DAYS = 2
"""Windows with fewer whole days are summarised by one scan (exact_stats.py)."""
PARALLEL_DAYS = 4
"""Reading this many days or more is a scan for parallel workers (PostgreSQL)."""
MAX_KEPT_VALUES = 12_000_000
"""Values (of all measures) kept in digests per database, least recently used dropped: about
100 MB, three months of a workspace with a million sessions."""
THREAD_VALUES = 500_000
"""Sessions from which the quantiles are picked in a worker thread (a partition of this many
values per measure takes tens of milliseconds: other requests keep the loop meanwhile)."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Digest:
    version: int | None
    count: int
    sums: tuple[int, ...]
    values: tuple[np.ndarray, ...]

    @property
    def size(self) -> int:
        return self.count * len(self.values)


@dataclass(frozen=True)
class DigestSummary:
    count: int
    totals: dict[str, int]
    quantiles: dict[tuple[str, float], float]


DigestKey = tuple[int, EventFilterSpec, int]  # workspace, filter, day


class DigestCache:
    def __init__(self, max_values: int = MAX_KEPT_VALUES) -> None:
        self.max_values = max_values
        self._digests: OrderedDict[DigestKey, Digest] = OrderedDict()
        self._values = 0
        self.days_read = 0
        """Whole days read from the database (tests count them)."""
        self.days_kept = 0
        """Whole days answered from a kept digest."""

    def get(self, key: DigestKey, version: int) -> Digest | None:
        digest = self._digests.get(key)
        if digest is None or digest.version != version:
            return None
        self._digests.move_to_end(key)
        return digest

    def put(self, key: DigestKey, digest: Digest) -> None:
        old = self._digests.pop(key, None)
        if old is not None:
            self._values -= old.size
        self._digests[key] = digest
        self._values += digest.size
        while self._values > self.max_values and self._digests:
            _, dropped = self._digests.popitem(last=False)
            self._values -= dropped.size

    def clear(self) -> None:
        self._digests.clear()
        self._values = 0

    def __len__(self) -> int:
        return len(self._digests)


_CACHES: WeakKeyDictionary[Database, DigestCache] = WeakKeyDictionary()


def cache_of(db: Database) -> DigestCache:
    cache = _CACHES.get(db)
    if cache is None:
        cache = _CACHES[db] = DigestCache()
    return cache


def epoch_day(value: datetime) -> float:
    return (value - _EPOCH).total_seconds() / DAY_SECONDS


def whole_days(window: TimeWindow) -> range:
    """The UTC days (days since the epoch) that lie wholly inside the window."""
    return range(math.ceil(epoch_day(window.start)), math.floor(epoch_day(window.end)))


OWN_FILTERS = ("sessions", "users", "agents", "providers", "models")


def keeps(spec: EventFilterSpec) -> bool:
    """Whether the sessions a filter selects change only when the sessions do."""
    cleared: dict[str, Any] = dict.fromkeys(OWN_FILTERS, ())  # Any: the fields differ in type
    return replace(spec, **cleared).is_empty()


async def digest_summary(
    conn: AsyncConnection,
    dialect: Dialect,
    cache: DigestCache,
    workspace_id: int,
    spec: EventFilterSpec,
    days: range,
    own_conditions: Sequence[ColumnElement[bool]],
    rest_conditions: Sequence[ColumnElement[bool]],
    measures: Sequence[tuple[str, ColumnElement[Any]]],
    quantiles: Sequence[float],
    scan_settings: Sequence[ColumnElement[Any]] = (),
    pay: Callable[[int], None] | None = None,
) -> DigestSummary:
    """`pay` is told how many of the days hold sessions before they are read (it may
    refuse: engine/query/cost.py). `own_conditions` select the filter's sessions at any time;
    `rest_conditions` those of the window that do not end on one of `days`. One snapshot:
    `conn` is in a transaction.
    `scan_settings` (set_config calls) go before reading many days, which is a scan best
    done in parallel; the rest, two index ranges, is read before them."""
    versions = dict(
        (
            await conn.execute(
                select(session_day_versions.c.day, session_day_versions.c.version).where(
                    session_day_versions.c.workspace_id == workspace_id,
                    session_day_versions.c.day >= days.start,
                    session_day_versions.c.day < days.stop,
                )
            )
        ).all()
    )
    if pay is not None:  # the days that hold sessions, before any of them is read
        pay(len(versions))
    # Only stamped days can be kept, and only they are visited in Python: a window of any
    # width (0001 to 9999 is 3.6 million days) costs what the workspace's stamped days cost,
    # the days in between being read as a few [start, stop) runs by one statement.
    digests: dict[int, Digest] = {}
    for day, version in versions.items():
        kept = cache.get((workspace_id, spec, day), version)
        if kept is not None:
            digests[day] = kept
    rest_row = (
        await conn.execute(select(*_aggregates(dialect, measures)).where(*rest_conditions))
    ).one()
    missing_runs = _gaps(days, sorted(digests))
    missing_count = len(days) - len(digests)
    cache.days_read += missing_count
    cache.days_kept += len(digests)
    if missing_runs:
        # only stamped days hold sessions: the unstamped rest of a wide window is empty
        # index ranges, no reason for parallel workers
        if scan_settings and len(versions) - len(digests) >= PARALLEL_DAYS:
            await conn.execute(select(*scan_settings))
        day_expr = literal_column(sqld.day_of_sql(dialect, "sessions.last_ts"), Integer)
        in_missing = or_(
            *(
                and_(sessions.c.last_ts >= day_start(a), sessions.c.last_ts < day_start(b))
                for a, b in missing_runs
            )
        )
        query = (
            select(day_expr.label("day"), *_aggregates(dialect, measures))
            .where(*own_conditions, in_missing)
            .group_by(day_expr)
        )
        read = {int(row[0]): row[1:] for row in (await conn.execute(query)).all()}
        nothing = (0, *(0,) * len(measures), *(None,) * len(measures))
        # the days read that hold sessions, and the stamped days read (kept for next time,
        # empty or not); an unstamped day without sessions adds nothing and is not visited
        for day in sorted(read.keys() | (versions.keys() - digests.keys())):
            digest = _digest(versions.get(day), read.get(day, nothing), len(measures))
            digests[day] = digest
            if digest.version is not None:
                cache.put((workspace_id, spec, day), digest)
    parts = [*digests.values(), _digest(None, tuple(rest_row), len(measures))]
    count = sum(p.count for p in parts)
    totals = {name: sum(p.sums[i] for p in parts) for i, (name, _) in enumerate(measures)}
    picked: dict[tuple[str, float], float] = {}
    if count:
        arrays = [[p.values[i] for p in parts if p.count] for i in range(len(measures))]
        names = [name for name, _ in measures]
        if count >= THREAD_VALUES:  # seconds of NumPy work: off the event loop
            picked = await asyncio.to_thread(_pick, names, arrays, count, quantiles)
        else:
            picked = _pick(names, arrays, count, quantiles)
    return DigestSummary(count, totals, picked)


_EMPTY = np.zeros(0, dtype=np.int64)


def _pick(
    names: Sequence[str],
    arrays: Sequence[Sequence[np.ndarray]],
    count: int,
    quantiles: Sequence[float],
) -> dict[tuple[str, float], float]:
    """Each measure's quantiles, interpolated between the values of ranks floor(h) and
    ceil(h), h = q * (count - 1) (`tallyql.sketch.exact_quantile`): one partition each."""
    neighbours = {q: sketch.neighbour_ranks(q, count) for q in quantiles}
    ranks = sorted({r for low, high, _ in neighbours.values() for r in (low, high)})
    picked: dict[tuple[str, float], float] = {}
    for name, parts in zip(names, arrays, strict=True):
        chosen = np.partition(np.concatenate(parts), ranks)
        for q, (low, high, t) in neighbours.items():
            picked[(name, q)] = sketch.interpolate(int(chosen[low]), int(chosen[high]), t)
    return picked


def day_start(day: int) -> datetime:
    return datetime.fromtimestamp(day * DAY_SECONDS, UTC)


def _gaps(days: range, kept: Sequence[int]) -> list[tuple[int, int]]:
    """The [start, stop) runs of `days` outside the ascending `kept` days (all inside it)."""
    gaps: list[tuple[int, int]] = []
    lo = days.start
    for day in kept:
        if lo < day:
            gaps.append((lo, day))
        lo = day + 1
    if lo < days.stop:
        gaps.append((lo, days.stop))
    return gaps


def _aggregates(
    dialect: Dialect, measures: Sequence[tuple[str, ColumnElement[Any]]]
) -> list[ColumnElement[Any]]:
    columns: list[ColumnElement[Any]] = [func.count()]
    columns += [func.coalesce(func.sum(expr), 0) for _, expr in measures]
    columns += [sqld.collect(dialect, expr) for _, expr in measures]
    return columns


def _digest(version: int | None, row: Sequence[Any], width: int) -> Digest:
    count = int(row[0])
    sums = tuple(int(v) for v in row[1 : 1 + width])
    values = tuple(_array(v) if count else _EMPTY for v in row[1 + width : 1 + 2 * width])
    return Digest(version, count, sums, values)


def _array(collected: Any) -> np.ndarray:
    return np.array(as_list(collected), dtype=np.int64)


__all__ = [
    "DigestCache",
    "DigestSummary",
    "cache_of",
    "day_start",
    "digest_summary",
    "keeps",
    "whole_days",
]
