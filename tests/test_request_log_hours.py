"""The request log's rare-filter path: a filtered page reads only the hours the rollups say hold
matches, and returns exactly the rows of a plain filtered scan, across page boundaries, with
events arriving between pages and between choosing the hours and reading them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from tallyql.engine import request_log
from tallyql.engine.query.filters import EventFilterSpec
from tallyql.engine.query.timerange import TimeWindow
from tallyql.engine.request_log import list_requests
from tallyql.storage.tables import workspaces
from tests.conftest import Api
from tests.support.helpers import iso, llm

RARE = EventFilterSpec(gateways=("gw-rare",), status_codes=(429,))
HOUR = timedelta(hours=1)


def _rare(event_id: str, at: datetime) -> dict[str, Any]:
    return llm(event_id, timestamp=iso(at), gateway="gw-rare", status_code=429, status="error")


def _dataset(now: datetime) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Ten days of common events every 20 minutes; rare matches in every 13th hour only
    (sparse: the hours are asked for, not read from a floor), two of them sharing an instant
    (the keyset's id tie-break)."""
    common = [
        llm(f"c{i:04d}", timestamp=iso(now - timedelta(minutes=20 * i)), gateway="gw-main")
        for i in range(1, 3 * 24 * 10)
    ]
    rare = []
    for h in range(3, 24 * 10, 13):
        at = now - h * HOUR - timedelta(minutes=7)
        rare.append(_rare(f"r{h:03d}a", at))
        if h % 3 == 0:
            rare.append(_rare(f"r{h:03d}b", at))
    # near misses: the gateway or the code alone
    misses = [
        llm(f"m{h:03d}", timestamp=iso(now - h * HOUR), gateway="gw-rare", status_code=200)
        for h in range(1, 24 * 10, 4)
    ]
    return [*common, *misses], rare


def _pinned_now() -> datetime:
    """Yesterday at 12:00 UTC, as the dataset's "now": the rare matches then fall on the same
    UTC days whatever the hour the test runs. With the real time from 18:00 on, the six newest
    fell within today and yesterday, which the request log reads whole as dense days, without
    choosing hours, and the tests of the hours path failed every evening."""
    yesterday = datetime.now(UTC) - timedelta(days=1)
    return yesterday.replace(hour=12, minute=0, second=0, microsecond=0)


def _plain(rare: list[dict[str, Any]], before: tuple[datetime, str] | None) -> list[str]:
    """The reference: a plain filtered scan, newest first by (ts, id)."""
    keyed = sorted(((datetime.fromisoformat(e["timestamp"]), e["id"]) for e in rare), reverse=True)
    return [i for t, i in keyed if before is None or (t, i) < before]


async def _workspace_id(api: Api) -> int:
    async with api.services.db.read() as conn:
        row = await conn.execute(select(workspaces.c.id).where(workspaces.c.name == "acme"))
        return int(row.scalar_one())


@pytest.mark.parametrize("days", [4, 30])  # hours counted at once; days, then their hours
async def test_pages_read_from_hours_equal_a_plain_scan(
    api: Api, days: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = await api.key()
    now = _pinned_now()
    others, rare = _dataset(now)
    assert (await api.ingest(key, [*others, *rare]))["accepted"] == len(others) + len(rare)
    ws = await _workspace_id(api)
    db = api.services.db
    window = TimeWindow(now - timedelta(days=days), now + HOUR, ZoneInfo("UTC"))
    inside = [e for e in rare if datetime.fromisoformat(e["timestamp"]) >= window.start]

    # a page's worth of hours, far fewer than the window's
    narrowing = await request_log._narrowing(db, ws, window, RARE, 6, None)
    assert narrowing is not None and not narrowing.complete
    assert 1 <= len(narrowing.hours) <= 5
    assert list(narrowing.hours) == sorted(narrowing.hours, reverse=True)
    assert narrowing.open_from > narrowing.hours[0] >= narrowing.check_from
    # ... and every page is answered from them (never read again without them)
    verdicts: list[bool] = []
    still_exact = request_log._still_exact

    async def recording(*args: Any) -> bool:
        verdicts.append(await still_exact(*args))
        return verdicts[-1]

    monkeypatch.setattr(request_log, "_still_exact", recording)

    listed: list[str] = []
    after: str | None = None
    arrived: list[dict[str, Any]] = []
    for page_no in range(100):
        page = await list_requests(db, ws, window, RARE, 5, after)
        ids = [r["id"] for r in page.rows]
        cursor_at = None if after is None else request_log._decode_after(after)
        expected = _plain([*inside, *arrived], cursor_at)
        assert ids == expected[:5]
        assert page.has_next_page == (len(expected) > 5)
        listed += ids
        if not page.has_next_page:
            break
        after = page.cursor(page.rows[-1])
        last = page.rows[-1]["ts"].astimezone(UTC)
        # between pages: a match in an hour that held none, older than the cursor (it must be
        # listed on a later page), and one newer than the cursor (never listed)
        late = [
            _rare(f"late{page_no}", last - timedelta(hours=2, minutes=31)),
            _rare(f"new{page_no}", now - timedelta(minutes=1)),
        ]
        assert (await api.ingest(key, late))["accepted"] == 2
        if datetime.fromisoformat(late[0]["timestamp"]) >= window.start:
            arrived.append(late[0])
    else:
        raise AssertionError("the walk did not end")
    assert len(listed) == len(set(listed))
    assert listed == _plain([*inside, *arrived], None)
    assert any(i.startswith("late") for i in listed)
    assert not any(i.startswith("new") for i in listed)
    assert verdicts == [True] * (page_no + 1)


async def test_fewer_matches_than_a_page_are_read_from_their_hours_only(api: Api) -> None:
    """A filter the rollups count fewer matches of than a page: every hour holding one is
    read, nothing else, and the page is the plain scan's; no match at all reads no hour."""
    key = await api.key()
    now = datetime.now(UTC).replace(microsecond=0)
    others, rare = _dataset(now)
    assert (await api.ingest(key, [*others, *rare]))["accepted"] == len(others) + len(rare)
    ws = await _workspace_id(api)
    db = api.services.db
    window = TimeWindow(now - timedelta(days=30), now + HOUR, ZoneInfo("UTC"))
    narrowing = await request_log._narrowing(db, ws, window, RARE, 100, None)
    assert narrowing is not None and narrowing.complete
    holding = {datetime.fromisoformat(e["timestamp"]).replace(minute=0, second=0) for e in rare}
    assert {narrowing.open_from, *narrowing.hours} == holding
    page = await list_requests(db, ws, window, RARE, 99, None)
    assert [r["id"] for r in page.rows] == _plain(rare, None)
    assert not page.has_next_page
    none = EventFilterSpec(gateways=("gw-rare",), status_codes=(503,))
    narrowing = await request_log._narrowing(db, ws, window, none, 100, None)
    assert narrowing is not None and narrowing.complete and not narrowing.hours
    assert (await list_requests(db, ws, window, none, 10, None)).rows == []
    # one arrives in the window's oldest hour: listed (its first event moved: read again)
    late = _rare("late", window.start + timedelta(minutes=1))
    assert (await api.ingest(key, [late]))["accepted"] == 1
    assert [r["id"] for r in (await list_requests(db, ws, window, RARE, 99, None)).rows] == (
        _plain([*rare, late], None)
    )


async def test_a_match_arriving_in_a_skipped_hour_before_the_read_is_listed(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An event committed after the hours were chosen, in an hour between them that held no
    match: the page must still be the plain scan's (the rollups, asked again, count it)."""
    key = await api.key()
    now = _pinned_now()
    others, rare = _dataset(now)
    assert (await api.ingest(key, [*others, *rare]))["accepted"] == len(others) + len(rare)
    ws = await _workspace_id(api)
    db = api.services.db
    window = TimeWindow(now - timedelta(days=30), now + HOUR, ZoneInfo("UTC"))
    choose = request_log._narrowing
    sneaked: list[dict[str, Any]] = []

    async def choose_then_arrive(*args: Any) -> request_log._Narrowing | None:
        narrowing = await choose(*args)
        assert narrowing is not None and narrowing.hours
        # an hour strictly between the newest and the oldest chosen, not chosen itself
        hours = [narrowing.open_from, *narrowing.hours]
        skipped = next(h for h in _between(hours) if h not in hours)
        sneaked.append(_rare("sneaked", skipped + timedelta(minutes=30)))
        assert (await api.ingest(key, sneaked))["accepted"] == 1
        return narrowing

    monkeypatch.setattr(request_log, "_narrowing", choose_then_arrive)
    page = await list_requests(db, ws, window, RARE, 5, None)
    assert [r["id"] for r in page.rows] == _plain([*rare, *sneaked], None)[:5]
    assert "sneaked" in [r["id"] for r in page.rows]


def _between(hours: list[datetime]) -> list[datetime]:
    out = []
    at = hours[0] - HOUR
    while at > hours[-1]:
        out.append(at)
        at -= HOUR
    return out
