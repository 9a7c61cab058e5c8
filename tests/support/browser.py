"""What the browser tests share: Debian's chromium driven by Playwright (one browser per test
module), a served instance with its key, and a router that blocks and records every request
to another host.

tests/conftest.py loads this module as a plugin, so its fixtures (`playwright`, `browser`) are
at every test's hand; they start nothing until a test asks for them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Playwright, Route, sync_playwright

from tests.support.server import Server, reset_database

CHROMIUM = "/usr/bin/chromium"
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
# screenshots of the pages, kept after the run for people to look at (.tallyql/ is ignored)
ARTIFACTS = Path(__file__).resolve().parents[2] / ".tallyql" / "artifacts"


@dataclass
class Served:
    server: Server
    key: str

    def ingest(self, events: list[dict[str, object]]) -> dict[str, object]:
        response = httpx.post(
            f"{self.server.url}/v1/events",
            json=events,
            headers={"Authorization": f"Bearer {self.key}"},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        return response.json()

    def graphql(
        self, query: str, variables: dict[str, object] | None = None, key: str | None = None
    ) -> dict[str, object]:
        """The server's own answer over plain HTTP (data, or raises with the errors)."""
        response = httpx.post(
            f"{self.server.url}/graphql",
            json={"query": query, "variables": variables or {}},
            headers={"Authorization": f"Bearer {key or self.key}"},
            timeout=30,
        )
        body = response.json()
        assert not body.get("errors"), body
        return body["data"]


@dataclass
class Offline:
    """Requests the page tried to send to another host (all aborted)."""

    blocked: list[str] = field(default_factory=list)

    def route(self, route: Route) -> None:
        if urlsplit(route.request.url).hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            self.blocked.append(route.request.url)
            route.abort()


@pytest.fixture(scope="module")
def playwright(postgres_database: str) -> Iterator[Playwright]:
    # Playwright's sync API runs an event loop in this thread, where asyncio.run then fails:
    # the PostgreSQL database is created before it starts, and reset in another thread
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    # Debian's chromium (.ci/run installs it): `playwright install` would download a browser
    browser = playwright.chromium.launch(executable_path=CHROMIUM)
    yield browser
    browser.close()


def module_database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, name: str
) -> tuple[str, Path]:
    """For a module fixture parametrized by database: its URL, emptied (PostgreSQL) or new
    (SQLite), and a data directory of its own."""
    data_dir = tmp_path_factory.mktemp(f"{name}-{request.param}")
    if request.param == "sqlite":
        return f"sqlite:///{data_dir / 'tallyql.db'}", data_dir
    url = request.getfixturevalue("postgres_database")
    with ThreadPoolExecutor(1) as pool:  # reset_database runs its own event loop
        pool.submit(asyncio.run, reset_database(url)).result()
    return url, data_dir
