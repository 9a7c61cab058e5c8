"""Chart images are kept by workspace, data version, preset or question, parameters and the
window resolved at the current minute, on both databases: a repeated request runs no query
and draws nothing; a committed event, a group membership change or the clock's next minute
gives a new image; another workspace never gets this one's."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tallyql.auth.principal import Role
from tallyql.clock import clock
from tallyql.engine import analytics
from tallyql.engine.known_values import forget
from tallyql.http import chart_render
from tallyql.http.charts import STATS, forget_images
from tallyql.storage.data_versions import read_version
from tallyql.storage.directory import set_group_members
from tallyql.storage.workspaces import get_or_create_workspace
from tests.conftest import Api
from tests.support.helpers import iso, llm
from tests.support.price_changes import REPRICE, create

PRESET = "/v1/charts/cost-by-model.png"
ASK = "/v1/ask.png"


@pytest.fixture
def queries(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the engine's analytics queries (every answer and total goes through it)."""
    count = [0]
    real: Callable[..., Awaitable[Any]] = analytics.custom_query

    async def counting(*args: Any, **kwargs: Any) -> Any:
        count[0] += 1
        return await real(*args, **kwargs)

    monkeypatch.setattr(analytics, "custom_query", counting)
    return count


async def _version(api: Api, workspace: str) -> int:
    async with api.services.db.write() as conn:
        ws = await get_or_create_workspace(conn, workspace)
    async with api.services.db.read() as conn:
        return await read_version(conn, ws)


async def test_a_repeated_request_runs_no_query_and_draws_nothing(
    api: Api, queries: list[int]
) -> None:
    forget()
    forget_images()
    moment = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(seconds=30)
    with clock.pinned(moment, tick=False):
        writer = await api.key("acme")
        viewer = {"Authorization": f"Bearer {await api.key('acme', Role.VIEWER)}"}
        at = iso(moment - timedelta(hours=2))
        await api.ingest(writer, [llm(f"a{i}", timestamp=at, model="gpt-4o") for i in range(3)])

        first = await api.client.get(PRESET, headers=viewer)
        assert first.status_code == 200 and first.headers["x-tallyql-cache"] == "miss"
        assert queries[0] >= 1 and STATS.renders == 1
        # the window drawn: the last 30 days up to the minute's start
        start, end = first.headers["x-tallyql-window"].split("/")
        assert datetime.fromisoformat(end) == moment.replace(second=0)
        assert datetime.fromisoformat(end) - datetime.fromisoformat(start) == timedelta(days=30)

        seen = queries[0]
        again = await api.client.get(PRESET, headers=viewer)
        assert again.headers["x-tallyql-cache"] == "hit" and again.content == first.content
        assert queries[0] == seen and STATS.renders == 1
        assert again.headers["etag"] == first.headers["etag"]
        assert again.headers["x-tallyql-window"] == first.headers["x-tallyql-window"]

        asked = await api.client.get(ASK, params={"q": "cost by model today"}, headers=viewer)
        assert asked.headers["x-tallyql-cache"] == "miss" and STATS.renders == 2
        seen = queries[0]
        asked_again = await api.client.get(ASK, params={"q": "cost by model today"}, headers=viewer)
        assert asked_again.headers["x-tallyql-cache"] == "hit"
        assert asked_again.content == asked.content and queries[0] == seen
        assert (
            asked_again.headers["x-tallyql-interpretation"]
            == (asked.headers["x-tallyql-interpretation"])
        )

        # a committed event moves the version: a new query, a new picture
        before = await _version(api, "acme")
        await api.ingest(writer, [llm("b1", timestamp=at, model="claude-sonnet-4")])
        assert await _version(api, "acme") > before
        seen = queries[0]
        after = await api.client.get(PRESET, headers=viewer)
        assert after.headers["x-tallyql-cache"] == "miss" and queries[0] > seen
        assert after.content != first.content and STATS.renders == 3
        asked_after = await api.client.get(ASK, params={"q": "cost by model today"}, headers=viewer)
        assert asked_after.headers["x-tallyql-cache"] == "miss"
        assert asked_after.content != asked.content

        # the same parameters in another order are the same image
        seen = queries[0]
        one = await api.client.get(
            PRESET, params=[("models", "gpt-4o"), ("timezone", "UTC")], headers=viewer
        )
        two = await api.client.get(
            PRESET, params=[("timezone", "UTC"), ("models", "gpt-4o")], headers=viewer
        )
        assert one.headers["x-tallyql-cache"] == "miss"
        assert two.headers["x-tallyql-cache"] == "hit" and two.content == one.content
        assert queries[0] == seen + 1

    # the next minute: relative windows move on, so the image is drawn again
    with clock.pinned(moment + timedelta(minutes=1), tick=False):
        later = await api.client.get(PRESET, headers=viewer)
        assert later.headers["x-tallyql-cache"] == "miss"
        assert later.headers["x-tallyql-window"] != after.headers["x-tallyql-window"]
    # an explicit window does not depend on the clock
    fixed = {"start": iso(moment - timedelta(days=1)), "end": iso(moment)}
    with clock.pinned(moment, tick=False):
        assert (await api.client.get(PRESET, params=fixed, headers=viewer)).headers[
            "x-tallyql-cache"
        ] == "miss"
    with clock.pinned(moment + timedelta(minutes=5), tick=False):
        assert (await api.client.get(PRESET, params=fixed, headers=viewer)).headers[
            "x-tallyql-cache"
        ] == "hit"
    forget()


async def test_another_workspace_never_sees_a_kept_image(api: Api) -> None:
    forget()
    forget_images()
    moment = datetime.now(UTC).replace(second=0, microsecond=0)
    with clock.pinned(moment, tick=False):
        at = iso(moment - timedelta(hours=1))
        await api.ingest(await api.key("acme"), [llm("x", timestamp=at, model="gpt-4o")])
        await api.ingest(await api.key("globex"), [llm("x", timestamp=at, model="gpt-4o-mini")])
        acme = {"Authorization": f"Bearer {await api.key('acme', Role.VIEWER)}"}
        globex = {"Authorization": f"Bearer {await api.key('globex', Role.VIEWER)}"}
        mine = await api.client.get(PRESET, headers=acme)
        theirs = await api.client.get(PRESET, headers=globex)
        assert mine.headers["x-tallyql-cache"] == theirs.headers["x-tallyql-cache"] == "miss"
        assert mine.content != theirs.content
        assert (
            b"gpt-4o-mini"
            not in (await api.client.get("/v1/charts/cost-by-model.svg", headers=acme)).content
        )
        for headers in (acme, globex):  # each its own, from the cache
            assert (await api.client.get(PRESET, headers=headers)).headers[
                "x-tallyql-cache"
            ] == "hit"
    forget()


async def test_group_membership_moves_the_version(api: Api) -> None:
    """A group's numbers are its current members': a membership change is a new version."""
    before = await _version(api, "acme")
    async with api.services.db.write() as conn:
        ws = await get_or_create_workspace(conn, "acme")
        await set_group_members(conn, ws, "sales", ["u1", "u2"])
    assert await _version(api, "acme") > before


async def test_repricing_gives_a_new_image(api: Api) -> None:
    """Repricing changes stored costs (events, then the rollups rebuilt): the version moves
    and the cost chart is drawn again, with the new costs."""
    forget()
    forget_images()
    moment = datetime.now(UTC).replace(second=0, microsecond=0)
    with clock.pinned(moment, tick=False):
        at = moment - timedelta(hours=3)
        admin = await api.key("acme")
        await api.ingest(admin, [llm("r1", timestamp=iso(at), model="gpt-4o")])
        viewer = {"Authorization": f"Bearer {await api.key('acme', Role.VIEWER)}"}
        first = await api.client.get(PRESET, headers=viewer)
        assert first.headers["x-tallyql-cache"] == "miss"
        assert (await api.client.get(PRESET, headers=viewer)).headers["x-tallyql-cache"] == "hit"
        before = await _version(api, "acme")
        # a price override, then repriceEvents: the stored costs follow the new price
        await create(
            api, admin, provider="openai", model="gpt-4o", inputPerMtok=900, outputPerMtok=900
        )
        window = {"start": iso(at - timedelta(hours=1)), "end": iso(moment)}
        report = (await api.data(admin, REPRICE, {"range": window}))["repriceEvents"]
        assert report["changed"] == 1
        assert await _version(api, "acme") > before
        after = await api.client.get(PRESET, headers=viewer)
        assert after.headers["x-tallyql-cache"] == "miss" and after.content != first.content
    forget()


async def test_drawing_never_stalls_the_event_loop() -> None:
    """vl-convert holds the GIL while it draws: the drawing worker is a process, so the loop
    keeps serving while it starts (and warms up: its first drawing takes a second or more)
    and while it draws."""
    chart_render.stop()
    gaps: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticking = asyncio.create_task(ticker())
    await asyncio.sleep(0.05)
    started = time.perf_counter()
    await chart_render.start()
    png = await chart_render.render("png", chart_render.WARM_SPEC, 2.0)
    took = time.perf_counter() - started
    stop.set()
    await ticking
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    # the loop ran all along: many ticks, none held back for the drawing's whole time
    assert len(gaps) >= 10 and max(gaps) < max(0.5, took / 2), (took, max(gaps), len(gaps))


def test_a_worker_whose_server_died_leaves() -> None:
    """A server killed outright cannot stop its drawing worker: the worker notices it was
    orphaned and leaves, rather than keep its memory."""
    script = (
        "import asyncio, os\n"
        "from tallyql.http import chart_render\n"
        "asyncio.run(chart_render.start())\n"
        "print(*chart_render._executor()._processes, flush=True)\n"
        "os._exit(0)\n"  # no clean shutdown, as under SIGKILL
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    (worker,) = (int(p) for p in done.stdout.split())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(worker, signal.SIGKILL)
    raise AssertionError("the orphaned worker was still running after 10 s")
