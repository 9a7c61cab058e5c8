"""First contact: a PostgreSQL database that does not exist yet, progress of long work, and the
first query that the CLI prints and the README shows."""

from __future__ import annotations

import asyncio
import io
import re
import uuid

import asyncpg
import pytest
from click.testing import CliRunner

from tallyql.cli import main
from tallyql.progress import Progress
from tallyql.storage.bootstrap import DatabaseSetupError, ensure_postgres_database
from tests.conftest import POSTGRES_URL


def _url_of(database: str) -> str:
    base, _, _ = POSTGRES_URL.rpartition("/")
    return f"{base}/{database}"


async def _drop(database: str) -> None:
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    finally:
        await conn.close()


async def _exists(database: str) -> bool:
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        return bool(await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database))
    finally:
        await conn.close()


async def test_migrate_creates_a_missing_postgres_database() -> None:
    name = f"tallyql_first_{uuid.uuid4().hex[:8]}"
    try:
        result = await asyncio.to_thread(
            CliRunner().invoke, main, ["migrate", "--database-url", _url_of(name)]
        )
        assert result.exit_code == 0, result.output
        assert f"created database '{name}'" in result.stderr
        assert result.stdout.startswith("database at revision ")
        assert await _exists(name)
        # a second run finds it and says nothing about creating it
        again = await asyncio.to_thread(
            CliRunner().invoke, main, ["migrate", "--database-url", _url_of(name)]
        )
        assert again.exit_code == 0, again.output
        assert "created database" not in again.stderr
    finally:
        await _drop(name)


async def test_a_role_that_may_not_create_databases_gets_one_line() -> None:
    role = f"tq_nocreate_{uuid.uuid4().hex[:6]}"
    name = f"tallyql_missing_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(POSTGRES_URL)
    await conn.execute(f'CREATE ROLE "{role}" LOGIN NOCREATEDB')
    try:
        host_part = POSTGRES_URL.split("@", 1)[1].rpartition("/")[0]
        url = f"postgresql://{role}@{host_part}/{name}"
        with pytest.raises(DatabaseSetupError) as raised:
            await ensure_postgres_database(url)
        message = str(raised.value)
        assert "\n" not in message
        assert f"database '{name}' does not exist" in message
        assert f"createdb -h 127.0.0.1 -p 5432 -U {role} {name}" in message
        assert not await _exists(name)

        # through the command: exit code 1 and that line, no traceback
        result = await asyncio.to_thread(
            CliRunner().invoke, main, ["migrate", "--database-url", url]
        )
        assert result.exit_code == 1
        assert "Traceback" not in result.output
        assert result.output.strip().splitlines() == [f"Error: {message}"]
    finally:
        await conn.execute(f'DROP ROLE IF EXISTS "{role}"')
        await conn.close()


async def test_an_unreachable_server_gets_one_line() -> None:
    with pytest.raises(DatabaseSetupError) as raised:
        await ensure_postgres_database("postgresql://postgres@127.0.0.1:1/tallyql")
    assert str(raised.value).startswith("cannot reach PostgreSQL at 127.0.0.1:1")
    assert "\n" not in str(raised.value)


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_prints_plain_lines_off_a_terminal() -> None:
    stream, clock = io.StringIO(), _Clock()
    progress = Progress(1000, stream=stream, every_seconds=5.0, clock=clock)
    clock.now += 1
    progress.update(100)  # first update: shown
    clock.now += 1
    progress.update(200)  # 1 s later: not yet
    clock.now += 5
    progress.update(700)  # 6 s after the first: shown
    clock.now += 1
    progress.update(1000)
    progress.finish()  # the final state, once
    lines = stream.getvalue().splitlines()
    assert lines == [
        "100/1,000 events (10%), 100/s, 0:01 elapsed, 0:09 left",
        "700/1,000 events (70%), 100/s, 0:07 elapsed, 0:03 left",
        "1,000/1,000 events (100%), 125/s, 0:08 elapsed, 0:00 left",
    ]
    assert "\r" not in stream.getvalue()


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_a_bar_on_a_terminal() -> None:
    stream, clock = _Terminal(), _Clock()
    progress = Progress(400, stream=stream, clock=clock)
    clock.now += 2
    progress.update(100)
    progress.finish()
    text = stream.getvalue()
    assert text.startswith("\r\x1b[2K[")
    bar = re.search(r"\[([#.]+)\]", text)
    assert bar is not None and bar.group(1) == "#" * 8 + "." * 22  # a quarter of 30
    assert "100/400 events (25%), 50/s, 0:02 elapsed, 0:06 left" in text
    assert text.endswith("\n")
