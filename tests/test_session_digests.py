"""sessionStats over windows of whole days keeps a digest per day (engine/session_digests.py):
its figures equal a plain recomputation from the raw events, with sessions that cross
midnight, end after the window or begin before it; a repeated query reads no day again; a
late event, a session that moves to a later day, a new session and a retention purge each
make exactly the days they touch be read again, and the figures stay exact."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import text

from tallyql.engine.session_digests import cache_of
from tallyql.storage.retention import Purger
from tallyql.storage.rollups.rebuild import rebuild
from tests.conftest import Api
from tests.support.price_changes import REPRICE, create, override_nano
from tests.support.sessions import STATS

DAY0 = datetime(2026, 11, 10, tzinfo=UTC)
WINDOW = {"start": "2026-11-11T07:00:00Z", "end": "2026-11-15T05:00:00Z"}  # whole: 12-14
START, END = datetime(2026, 11, 11, 7, tzinfo=UTC), datetime(2026, 11, 15, 5, tzinfo=UTC)
FIELDS = {"cost": "costUsd", "tokens": "totalTokens", "duration": "durationMs"}
UNITS = {"cost": 1e9, "tokens": 1.0, "duration": 1e3, "requests": 1.0}


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def event(session: str, n: int, at: datetime, micro_usd: int, tokens: int, user: str) -> dict:
    return {
        "id": f"{session}-{n}",
        "timestamp": iso(at),
        "provider": "openai",
        "model": "gpt-4o",
        "session_id": session,
        "user_id": user,
        "input_tokens": tokens,
        "output_tokens": tokens // 4,
        "cost_usd": micro_usd / 1e6,
    }


def traffic(rng: random.Random, count: int, prefix: str) -> list[dict[str, Any]]:
    """Sessions from a day before the window to a day after it, of one to four calls up to
    three hours apart (so that many cross midnight), with values from small pools (ties)."""
    out = []
    for i in range(count):
        at = DAY0 + timedelta(seconds=rng.randrange(6 * 86_400))
        user = f"u{i % 3}"
        for n in range(rng.choice((1, 2, 2, 4))):
            out.append(
                event(f"{prefix}{i}", n, at, rng.choice((0, 50, 125, 9000)), 10 * (i % 7), user)
            )
            at += timedelta(seconds=rng.choice((1, 30, 2400, 10_800)))
    return out


def expected(events: list[dict[str, Any]], user: str | None = None) -> dict[str, Any]:
    """The window's sessions (overlapping it) and their measures, from the raw events."""
    by_session: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        if user is None or e["user_id"] == user:
            by_session[e["session_id"]].append(e)
    rows = []
    for evs in by_session.values():
        times = [datetime.fromisoformat(e["timestamp"]) for e in evs]
        first, last = min(times), max(times)
        if not (first < END and last >= START):
            continue
        rows.append(
            {
                "cost": sum(round(e["cost_usd"] * 1e9) for e in evs),
                "tokens": sum(e["input_tokens"] + e["output_tokens"] for e in evs),
                "duration": (last - first) // timedelta(microseconds=1),
                "requests": len(evs),
            }
        )
    return {"sessions": len(rows), "rows": rows}


def check(stats: dict[str, Any], want: dict[str, Any]) -> None:
    assert stats["sessions"] == want["sessions"]
    for name, field in {**FIELDS, "requests": "requests"}.items():
        values = sorted(r[name] for r in want["rows"])
        got = stats[field]
        for q, key in ((0.5, "p50"), (0.95, "p95")):
            want_q = float(np.quantile(values, q, method="linear"))
            assert got[key] * UNITS[name] == pytest.approx(want_q, rel=1e-12), (name, q)
        assert got["avg"] * UNITS[name] == pytest.approx(sum(values) / len(values), rel=1e-12)


async def stats(api: Api, key: str, user: str | None = None) -> dict[str, Any]:
    variables: dict[str, Any] = {"range": WINDOW}
    if user is not None:
        variables["filter"] = {"users": [user]}
    return (await api.data(key, STATS, variables))["sessionStats"]


async def test_whole_days_are_kept_and_read_again_when_touched(api: Api) -> None:
    key = await api.key()
    events = traffic(random.Random(4), 300, "s")
    for i in range(0, len(events), 200):
        await api.ingest(key, events[i : i + 200])
    cache = cache_of(api.services.db)

    check(await stats(api, key), expected(events))
    assert cache.days_read == 3 and cache.days_kept == 0
    check(await stats(api, key), expected(events))
    assert cache.days_read == 3 and cache.days_kept == 3  # nothing read again

    # a late call on Nov 12 for a session seen on Nov 12: the days of its span are read again
    seen_12 = next(e for e in events if e["timestamp"].startswith("2026-11-12T0"))
    late_at = datetime(2026, 11, 12, 0, 0, 1, tzinfo=UTC)
    late = event(seen_12["session_id"], 90, late_at, 7, 3, seen_12["user_id"])
    await api.ingest(key, [late])
    events.append(late)
    times = [
        datetime.fromisoformat(e["timestamp"])
        for e in events
        if e["session_id"] == late["session_id"]
    ]
    span = range(min(times).day, max(times).day + 1)
    check(await stats(api, key), expected(events))
    assert cache.days_read == 3 + len(set(span) & {12, 13, 14})

    # a session of Nov 12 that now ends on Nov 14 (its old and new last days are read)
    before = cache.days_read
    moved = event("s-moving", 0, datetime(2026, 11, 12, 12, tzinfo=UTC), 125, 20, "u1")
    await api.ingest(key, [moved])
    events.append(moved)
    check(await stats(api, key), expected(events))
    assert cache.days_read == before + 1
    later = event("s-moving", 1, datetime(2026, 11, 14, 12, tzinfo=UTC), 9000, 20, "u1")
    await api.ingest(key, [later])
    events.append(later)
    check(await stats(api, key), expected(events))
    assert cache.days_read == before + 1 + 3  # Nov 12, 13 and 14: the session's span

    # another filter keeps digests of its own, as exact
    for user in ("u0", "u2"):
        check(await stats(api, key, user), expected(events, user))


async def test_a_purge_changes_the_days_it_empties(api: Api) -> None:
    key = await api.key()
    events = traffic(random.Random(9), 150, "p")
    await api.ingest(key, events)
    check(await stats(api, key), expected(events))
    cutoff = datetime(2026, 11, 13, tzinfo=UTC)
    await Purger(api.services.db, batch_rows=25).purge(cutoff, None)
    last_seen: dict[str, datetime] = {}
    for e in events:
        at = datetime.fromisoformat(e["timestamp"])
        last_seen[e["session_id"]] = max(at, last_seen.get(e["session_id"], at))
    # sessions last seen before the cutoff are gone; the others keep their totals (their
    # events before the cutoff are purged, what the session counted of them is not)
    survivors = [e for e in events if last_seen[e["session_id"]] >= cutoff]
    check(await stats(api, key), expected(survivors))
    assert cache_of(api.services.db).days_read == 3 + 1  # Nov 12 emptied (11 is an edge)


async def test_other_workspaces_are_apart(api: Api) -> None:
    mine, theirs = await api.key("mine"), await api.key("theirs")
    my_events = traffic(random.Random(1), 60, "m")
    await api.ingest(mine, my_events)
    await api.ingest(theirs, traffic(random.Random(2), 90, "t"))
    check(await stats(api, mine), expected(my_events))
    check(await stats(api, mine), expected(my_events))  # from digests
    assert (await stats(api, theirs))["sessions"] == expected(traffic(random.Random(2), 90, "t"))[
        "sessions"
    ]


async def test_repricing_and_rebuilding_change_the_days_of_their_sessions(api: Api) -> None:
    key = await api.key()
    house = [
        {
            "id": f"h{n}",
            "timestamp": iso(datetime(2026, 11, 12, 20, tzinfo=UTC) + timedelta(hours=3 * n)),
            "provider": "acme",
            "model": "house-model",  # unpriced until an override prices it
            "session_id": f"hs{n % 3}",
            "input_tokens": 1_000 * (n + 1),
            "output_tokens": 100,
        }
        for n in range(9)
    ]
    priced = traffic(random.Random(3), 40, "q")
    await api.ingest(key, house + priced)
    before = await stats(api, key)
    for e in house:
        e["cost_usd"] = 0.0
    check(before, expected(house + priced))
    await create(api, key, model="house-.*", modelIsRegex=True, inputPerMtok=0.5, outputPerMtok=1.5)
    reprice = await api.data(key, REPRICE, {"range": WINDOW})
    assert reprice["repriceEvents"]["changed"] == len(house)
    for e in house:
        e["cost_usd"] = override_nano((0.5, 1.5, None, None, None), e["input_tokens"], 100) / 1e9
    check(await stats(api, key), expected(house + priced))

    # sessions drifted from their events (as by hand), kept so, then rebuilt from the events
    async with api.services.db.write() as conn:
        await conn.execute(text("UPDATE sessions SET cost_nanousd = cost_nanousd + 1000000"))
    cache_of(api.services.db).clear()  # read the drifted sessions, and keep them
    drifted = await stats(api, key)
    want = expected(house + priced)
    mean_cost = sum(r["cost"] for r in want["rows"]) / want["sessions"] / 1e9
    assert drifted["costUsd"]["avg"] == pytest.approx(mean_cost + 0.001, rel=1e-9)
    await rebuild(api.services.db, DAY0, DAY0 + timedelta(days=7), sessions=True)
    check(await stats(api, key), expected(house + priced))


HUGE = {"start": "0001-02-01T00:00:00Z", "end": "9999-12-01T00:00:00Z"}


async def test_a_window_of_millennia_visits_only_stamped_days(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """0001 to 9999 is 3.6 million whole days: only the days that hold sessions (stamped) are
    visited in Python, empty workspace or not, and the figures are every session's."""
    from tallyql.engine import session_digests

    made: list[int | None] = []
    real = session_digests._digest

    def counted(version: int | None, row: Any, width: int) -> Any:
        made.append(version)
        return real(version, row, width)

    monkeypatch.setattr(session_digests, "_digest", counted)
    key = await api.key()
    empty = (await api.data(key, STATS, {"range": HUGE}))["sessionStats"]
    assert empty["sessions"] == 0 and empty["costUsd"]["p50"] is None
    assert made == [None]  # the edges' part alone: no day was visited

    events = traffic(random.Random(5), 80, "h")
    await api.ingest(key, events)
    made.clear()
    got = (await api.data(key, STATS, {"range": HUGE}))["sessionStats"]
    days = {datetime.fromisoformat(e["timestamp"]).date() for e in events}
    assert got["sessions"] == len({e["session_id"] for e in events})
    want = expected_all(events)
    check(got, want)
    # one digest per stamped day (each session's span; within the traffic's days) + the edges
    async with api.services.db.read() as conn:
        stamped = (await conn.execute(text("SELECT count(*) FROM session_day_versions"))).scalar()
    assert len(made) == stamped + 1 and stamped <= len(days) + 1
    made.clear()
    check((await api.data(key, STATS, {"range": HUGE}))["sessionStats"], want)
    assert made == [None]  # every day kept: nothing read again


def expected_all(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Every session's measures (a window that holds them all)."""
    by_session: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        by_session[e["session_id"]].append(e)
    rows = []
    for evs in by_session.values():
        times = [datetime.fromisoformat(e["timestamp"]) for e in evs]
        rows.append(
            {
                "cost": sum(round(e["cost_usd"] * 1e9) for e in evs),
                "tokens": sum(e["input_tokens"] + e["output_tokens"] for e in evs),
                "duration": (max(times) - min(times)) // timedelta(microseconds=1),
                "requests": len(evs),
            }
        )
    return {"sessions": len(rows), "rows": rows}
