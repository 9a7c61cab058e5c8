"""sessionStats stays exact whatever the sample brackets: quantiles at edge sizes (1, 2, 3, 20,
21 sessions, with ties), every way a bracket can hit or miss the ranks a quantile needs, and the
sampled path itself, all against NumPy's linear interpolation between the closest ranks (the
documented definition, PostgreSQL's percentile_cont)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from tallyql.engine import exact_stats
from tallyql.engine import sessions as engine
from tallyql.engine.exact_stats import WHOLE, Bracket
from tallyql.engine.filters import EventFilterSpec
from tallyql.engine.timerange import TimeWindow
from tests.conftest import Api
from tests.support.helpers import workspace_id_of
from tests.support.ops_data import DAY, RANGE

STATS = """
query($range: TimeRangeInput!) {
  sessionStats(range: $range) {
    sessions
    costUsd { p50 avg p95 } totalTokens { p50 avg p95 } durationMs { p50 avg p95 }
    requests { p50 avg p95 }
  }
}"""
FIELDS = {
    "cost": "costUsd",
    "tokens": "totalTokens",
    "duration": "durationMs",
    "requests": "requests",
}
UNITS = {"cost": 1e9, "tokens": 1.0, "duration": 1e3, "requests": 1.0}
"""API value * unit = the integer the database holds (nano-USD, microseconds)."""
QS = (0.5, 0.95)


@dataclass(frozen=True)
class Planned:
    """A session as planned: its integer measures, and the events that make it."""

    id: str
    requests: int
    duration_us: int
    cost_micro_usd: int  # per event
    tokens: int  # per event
    user: str = "u0"

    def measures(self) -> dict[str, int]:
        return {
            "cost": self.cost_micro_usd * 1000 * self.requests,
            "tokens": self.tokens * self.requests,
            "duration": self.duration_us if self.requests > 1 else 0,
            "requests": self.requests,
        }

    def events(self, start: Any) -> list[dict[str, Any]]:
        out = []
        for k in range(self.requests):
            at = start if k == 0 else start + timedelta(microseconds=self.duration_us)
            out.append(
                {
                    "id": f"{self.id}-{k}",
                    "timestamp": at.isoformat().replace("+00:00", "Z"),
                    "kind": "llm_call",
                    "provider": "openai",
                    "model": "gpt-4o",
                    "session_id": self.id,
                    "user_id": self.user,
                    "input_tokens": self.tokens - self.tokens // 3,
                    "output_tokens": self.tokens // 3,
                    "cost_usd": self.cost_micro_usd / 1e6,
                }
            )
        return out


def planned(rng: random.Random, n: int, prefix: str) -> list[Planned]:
    """n sessions whose measures come from small pools, so that ties are common."""
    return [
        Planned(
            f"{prefix}{i}",
            requests=rng.choice((1, 2, 2, 3, 5)),
            duration_us=rng.choice((0, 1_500_000, 1_500_000, 61_000_250, 7_200_000_001)),
            cost_micro_usd=rng.choice((0, 125, 125, 4000)),
            tokens=rng.choice((0, 30, 30, 900, 1_000_003)),
            user=f"u{i % 3}",
        )
        for i in range(n)
    ]


def events_of(sessions: list[Planned]) -> list[dict[str, Any]]:
    out = []
    for i, s in enumerate(sessions):
        out += s.events(DAY + timedelta(hours=1, minutes=7 * i, microseconds=i))
    return out


def interpolated(values: list[int], q: float) -> float:
    """The exact q-quantile by NumPy (independent of tallyql's arithmetic)."""
    return float(np.quantile(values, q, method="linear"))


def neighbours(values: list[int], q: float) -> tuple[int, int, int, int]:
    """(rank floor(h), rank ceil(h), their values), h = q * (n - 1): what a bracket must hold."""
    ordered = sorted(values)
    h = q * (len(ordered) - 1)
    low, high = math.floor(h), math.ceil(h)
    return low, high, ordered[low], ordered[high]


def api_value(got: float | None, name: str) -> float:
    """An API value back in the database's integer unit."""
    assert got is not None
    return got * UNITS[name]


def check(stats: dict[str, Any], sessions: list[Planned]) -> None:
    assert stats["sessions"] == len(sessions)
    for name, field in FIELDS.items():
        values = [s.measures()[name] for s in sessions]
        got = stats[field]
        if not values:
            assert got == {"p50": None, "avg": None, "p95": None}
            continue
        for q, field in ((0.5, "p50"), (0.95, "p95")):
            want = interpolated(values, q)
            assert api_value(got[field], name) == pytest.approx(want, rel=1e-12), (name, values)
        assert got["avg"] * UNITS[name] == pytest.approx(sum(values) / len(values), rel=1e-12)


def tight_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every row of the span sampled and the narrowest brackets: the bracketed path (counts,
    gathered values, picks) runs even on a handful of sessions."""
    monkeypatch.setattr(exact_stats, "MIN_SAMPLE", 1)
    monkeypatch.setattr(exact_stats, "SAMPLE_FRACTION", 1.0)
    monkeypatch.setattr(exact_stats, "BRACKET_Z", 0.0)


@pytest.mark.parametrize("sampled", [False, True], ids=["default", "tight"])
async def test_quantile_ranks_at_edge_sizes(
    api: Api, monkeypatch: pytest.MonkeyPatch, sampled: bool
) -> None:
    if sampled:
        tight_sample(monkeypatch)
    rng = random.Random(20261120)
    for n in (0, 1, 2, 3, 20, 21):
        for trial in range(2):
            key = await api.key(f"edge-{n}-{trial}")
            sessions = planned(rng, n, f"s{n}-{trial}-")
            if sessions:
                assert (await api.ingest(key, events_of(sessions)))["accepted"] > 0
            stats = (await api.data(key, STATS, {"range": RANGE}))["sessionStats"]
            check(stats, sessions)


async def test_all_equal_values(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    tight_sample(monkeypatch)
    key = await api.key()
    sessions = [Planned(f"same{i}", 2, 1_500_000, 125, 30) for i in range(21)]
    await api.ingest(key, events_of(sessions))
    check((await api.data(key, STATS, {"range": RANGE}))["sessionStats"], sessions)


def brackets_around(values: list[int], q: float) -> dict[str, Bracket]:
    """Brackets that hold both neighbours, miss either on either side, split tie groups or
    leave a side open."""
    ordered = sorted(values)
    _, _, lower, upper = neighbours(values, q)
    below = [v for v in ordered if v < lower]
    above = [v for v in ordered if v > upper]
    out = {
        "whole": WHOLE,
        "point lower": Bracket(lower, lower),
        "point upper": Bracket(upper, upper),
        "around": Bracket(ordered[0], ordered[-1]),
        "neighbours": Bracket(lower, upper),
        "from lower": Bracket(lower, None),
        "from upper": Bracket(upper, None),
        "up to lower": Bracket(None, lower),
        "up to upper": Bracket(None, upper),
    }
    if below:
        out |= {
            "point below": Bracket(below[-1], below[-1]),
            "all below": Bracket(None, below[-1]),
            "split below": Bracket(below[-1], upper),
        }
    if above:
        out |= {
            "point above": Bracket(above[0], above[0]),
            "all above": Bracket(above[0], None),
            "split above": Bracket(lower, above[0]),
            "just above": Bracket(above[0], above[-1]),
        }
    return out


def misses(values: list[int], q: float, b: Bracket) -> bool:
    """Whether bracket b fails to hold the values of both ranks the quantile needs: the
    values below lo must be at most rank floor(h) many, those up to hi more than ceil(h)."""
    low, high, _, _ = neighbours(values, q)
    below = sum(v < b.lo for v in values) if b.lo is not None else 0
    up_to = sum(v <= b.hi for v in values) if b.hi is not None else len(values)
    return not (below <= low and high < up_to)


async def test_every_bracket_gives_the_exact_value(api: Api) -> None:
    key = await api.key()
    sessions = planned(random.Random(5), 22, "b")  # h = 10.5 and 19.95: both interpolate
    await api.ingest(key, events_of(sessions))
    db, ws = api.services.db, await workspace_id_of(api.services, key)
    window = TimeWindow(DAY, DAY + timedelta(days=1), ZoneInfo("UTC"))
    measures = engine.exact_measures()
    conditions = engine.session_conditions(db.dialect, ws, window, EventFilterSpec())
    sampling = exact_stats.Sampling(conditions, engine.sessions.c.last_ts, None)
    values = {m: [s.measures()[m] for s in sessions] for m in FIELDS}
    # the neighbours differ somewhere, so that an upper neighbour outside a bracket is tried
    assert any(
        neighbours(values[m], q)[2] != neighbours(values[m], q)[3] for m in FIELDS for q in QS
    )
    recounted = 0
    for name in FIELDS:
        for q in QS:
            for label, b in brackets_around(values[name], q).items():
                brackets = {(m, p): WHOLE for m in FIELDS for p in QS} | {(name, q): b}
                async with db.read() as conn:
                    summary = await exact_stats.exact_summary(
                        conn, db.dialect, conditions, measures, QS, sampling, brackets
                    )
                assert summary.count == len(sessions)
                got = summary.quantiles[(name, q)]
                assert got == interpolated(values[name], q), (name, q, label, b)
                assert summary.totals[name] == sum(values[name])
                missed = misses(values[name], q, b)
                assert summary.recounted == int(missed), (name, q, label)
                recounted += summary.recounted
    assert recounted > 0
    # the same through the API's entry point, all measures bracketed at once
    brackets = {
        (m, q): brackets_around(values[m], q).get("split below", WHOLE) for m in FIELDS for q in QS
    }
    result = await engine.session_stats(db, ws, window, EventFilterSpec(), brackets)
    for name in FIELDS:
        for q in QS:
            want = interpolated(values[name], q)
            assert api_value(result.p(name, q), name) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("with_range", [True, False], ids=["range", "no range"])
@pytest.mark.parametrize("users", [None, ("u0", "u2")], ids=["all", "users"])
async def test_sampled_brackets_over_many_sessions(
    api: Api, monkeypatch: pytest.MonkeyPatch, with_range: bool, users: tuple[str, ...] | None
) -> None:
    """Enough sessions for a real sample (MIN_SAMPLE lowered, brackets narrow), with and
    without a range (the sample then spans the workspace's sessions), with and without a
    filter (the sample's slices are then literal ranges, after a read of the extent)."""
    monkeypatch.setattr(exact_stats, "MIN_SAMPLE", 5)
    monkeypatch.setattr(exact_stats, "SAMPLE_FRACTION", 0.5)
    monkeypatch.setattr(exact_stats, "BRACKET_Z", 1.0)
    sampled: list[dict[tuple[str, float], Bracket]] = []
    sample = exact_stats.sample_brackets

    async def recorded(*args: Any) -> dict[tuple[str, float], Bracket]:
        sampled.append(await sample(*args))
        return sampled[-1]

    monkeypatch.setattr(exact_stats, "sample_brackets", recorded)
    key = await api.key()
    sessions = planned(random.Random(9), 150, "m")
    await api.ingest(key, events_of(sessions))
    db, ws = api.services.db, await workspace_id_of(api.services, key)
    day = TimeWindow(DAY, DAY + timedelta(days=1), ZoneInfo("UTC"))
    window = day if with_range else None
    spec = EventFilterSpec(users=users) if users else EventFilterSpec()
    chosen = [s for s in sessions if users is None or s.user in users]
    assert 0 < len(chosen) < len(sessions) or users is None
    for _ in range(3):
        result = await engine.session_stats(db, ws, window, spec)
        assert result.sessions == len(chosen)
        for name in FIELDS:
            values = [s.measures()[name] for s in chosen]
            for q in QS:
                want = interpolated(values, q)
                got = api_value(result.p(name, q), name)
                assert got == pytest.approx(want, rel=1e-12), (name, q)
    # the bracketed path ran: bounded brackets, some of them gathering values
    assert len(sampled) == 3
    bounded = [b for b in sampled[0].values() if b.lo is not None and b.hi is not None]
    assert len(bounded) >= 4 and any(not b.is_point for b in bounded)
    if with_range and users is None:
        stats = (await api.data(key, STATS, {"range": RANGE}))["sessionStats"]
        check(stats, sessions)


def test_brackets_from_a_sample() -> None:
    ordered = list(range(100))
    b = exact_stats.bracket(ordered, 0.5, z=1.0)
    assert b.lo is not None and b.hi is not None
    assert b.lo < 49 < b.hi
    assert exact_stats.bracket(ordered[:5], 0.5) == WHOLE  # too few to bracket
    assert exact_stats.bracket([7] * 100, 0.95, z=1.0) == Bracket(7, 7)
    assert exact_stats.bracket(ordered, 0.95, z=100.0) == WHOLE
    slices = exact_stats.sample_fractions(random.Random(1))
    assert len(slices) == exact_stats.SAMPLE_SLICES
    assert all(0 <= a < b < 1 + 1 / exact_stats.SAMPLE_SLICES for a, b in slices)
    widths = {round((b - a) * exact_stats.SAMPLE_SLICES, 9) for a, b in slices}
    assert widths == {exact_stats.SAMPLE_FRACTION}


def test_the_sample_is_the_same_every_time() -> None:
    """No unseeded draw: one question reads one sample, so its cost is reproducible."""
    first = exact_stats.sample_fractions()
    assert exact_stats.sample_fractions() == first
    assert len(first) == exact_stats.SAMPLE_SLICES
    width = exact_stats.SAMPLE_FRACTION / exact_stats.SAMPLE_SLICES
    assert all(0 <= lo < 1 and hi - lo == pytest.approx(width) for lo, hi in first)
