"""Fixtures: every database test runs on SQLite and on PostgreSQL.

PostgreSQL comes from TALLYQL_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/test).
Each test session creates its own database there, so parallel runs never collide; a test that
cannot reach PostgreSQL fails, it never skips.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import httpx
import pytest
import time_machine
from fastapi import FastAPI

from tallyql.app import create_app
from tallyql.auth.principal import Role
from tallyql.config import Settings
from tallyql.services import Services, start_services
from tallyql.storage.tables import metadata

if TYPE_CHECKING:
    from tests.support.notify_helpers import Mailbox, Receiver

POSTGRES_URL = os.environ.get(
    "TALLYQL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
DATABASES = ("sqlite", "postgresql")

# the shared helpers' asserts report their operands as a test module's do (pytest rewrites
# only test modules and conftest unless told)
pytest.register_assert_rewrite("tests.support")

# the browser tests' fixtures (Debian's chromium through Playwright), shared by their modules
pytest_plugins = ["tests.support.browser"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--clock",
        default=os.environ.get("TALLYQL_TEST_CLOCK"),
        help="run the tests with the wall clock set to this ISO 8601 moment, running on from "
        "there (e.g. 2026-01-31T23:59:50+00:00); also TALLYQL_TEST_CLOCK",
    )


_TRAVELLER: list[time_machine.travel] = []


def pytest_configure(config: pytest.Config) -> None:
    """With --clock the whole session, test modules' imports, tests and server alike, runs
    from that moment on: the way to prove that no test depends on the hour it runs at
    (time_machine moves datetime.now and time.time, which test code reads too; the event
    loop's monotonic clock is untouched)."""
    at = config.getoption("--clock")
    if at:
        traveller = time_machine.travel(datetime.fromisoformat(at), tick=True)
        traveller.start()
        _TRAVELLER.append(traveller)


def pytest_unconfigure(config: pytest.Config) -> None:
    while _TRAVELLER:
        _TRAVELLER.pop().stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A local webhook sink (every test that sends webhooks, alerts or reports)."""
    from tests.support.notify_helpers import webhook_receiver  # it imports this module

    with webhook_receiver() as found:
        yield found


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    """A local SMTP server (aiosmtpd) that keeps what it receives."""
    from tests.support.notify_helpers import smtp_server  # it imports this module

    with smtp_server() as box:
        yield box


@pytest.fixture
def midday() -> Iterator[datetime]:
    """Today's noon UTC, the clock running on from there: for tests whose events, stamped
    seconds to minutes back, must all fall in today (and in this hour) whenever they run."""
    noon = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    with time_machine.travel(noon, tick=True):
        yield noon


def _admin_dsn() -> str:
    return POSTGRES_URL


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session (dropped afterwards)."""
    name = f"tallyql_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"

    async def create() -> None:
        conn = await asyncpg.connect(_admin_dsn())
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    async def drop() -> None:
        conn = await asyncpg.connect(_admin_dsn())
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    try:
        asyncio.run(create())
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"PostgreSQL at {POSTGRES_URL} is required for the tests: {exc}")
    base, _, _ = POSTGRES_URL.rpartition("/")
    yield f"{base}/{name}"
    asyncio.run(drop())


async def _reset_postgres(url: str) -> None:
    """Empty every table (and drop day partitions) so each test starts clean."""
    conn = await asyncpg.connect(url)
    try:
        exists = await conn.fetchval("SELECT to_regclass('public.events') IS NOT NULL")
        if not exists:
            return
        names = [t.name for t in metadata.sorted_tables]
        present = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename = ANY($1)",
            names,
        )
        parts = await conn.fetch(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE c.relkind IN ('r', 'p')"  # tables, not the partitions' indexes
        )
        for part in parts:
            await conn.execute(f'DROP TABLE IF EXISTS "{part["relname"]}"')
        tables = ", ".join(f'"{r["tablename"]}"' for r in present)
        if tables:
            await conn.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()


@pytest.fixture(params=DATABASES)
def db_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def database_url(db_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if db_kind == "sqlite":
        return f"sqlite:///{tmp_path / 'tallyql.db'}"
    return request.getfixturevalue("postgres_database")


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    # tests ingest at fixed dates (2026-11-20, ...) that the default age bound, the retention
    # window, would refuse as time goes by; tests of the bound set their own
    # one key asks many questions in quick succession here: the per-key budget per minute is
    # tested, with its own settings, in test_request_limits.py
    return Settings(
        data_dir=tmp_path,
        database_url=database_url,
        key_cache_seconds=0.0,
        max_event_age_days=36_500,
        cost_key_limit_per_minute=1_000_000_000,
    )


@pytest.fixture
async def services(settings: Settings, db_kind: str) -> AsyncIterator[Services]:
    if db_kind == "postgresql":
        await _reset_postgres(settings.database_url)
    svc = await start_services(settings)
    try:
        yield svc
    finally:
        await svc.stop()


@dataclass
class Api:
    """An HTTP client for one app, with helpers for keys and GraphQL."""

    app: FastAPI
    client: httpx.AsyncClient

    @property
    def services(self) -> Services:
        return self.app.state.services

    async def key(self, workspace: str = "acme", role: Role = Role.ADMIN) -> str:
        key, _ = await self.services.keys.create(workspace, role, f"test {role.value}")
        return key

    async def graphql(
        self,
        key: str | None,
        query: str,
        variables: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        headers = {**({"Authorization": f"Bearer {key}"} if key else {}), **(headers or {})}
        response = await self.client.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )
        assert response.status_code == 200, response.text
        return response.json()

    async def data(
        self,
        key: str,
        query: str,
        variables: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """GraphQL data, asserting there were no errors (`headers`: more request headers)."""
        body = await self.graphql(key, query, variables, headers)
        assert "errors" not in body, body["errors"]
        return body["data"]

    async def ingest(self, key: str, events: list[dict[str, Any]]) -> dict[str, Any]:
        response = await self.client.post(
            "/v1/events", json=events, headers={"Authorization": f"Bearer {key}"}
        )
        assert response.status_code == 200, response.text
        return response.json()


@asynccontextmanager
async def running_api(settings: Settings, db_kind: str) -> AsyncIterator[Api]:
    """An app on an emptied database, with a client; for tests that need their own settings."""
    if db_kind == "postgresql":
        await _reset_postgres(settings.database_url)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Api(app, client)


@pytest.fixture
async def api(settings: Settings, db_kind: str) -> AsyncIterator[Api]:
    async with running_api(settings, db_kind) as client:
        yield client
