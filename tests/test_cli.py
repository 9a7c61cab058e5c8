"""The `tallyql` command: keys, migrate, export-schema, demo, rollups rebuild."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

from click.testing import CliRunner, Result
from sqlalchemy import delete, select

from tallyql.cli import main
from tallyql.config import Settings
from tallyql.services import start_services
from tallyql.storage.database import Database
from tallyql.storage.migrate import current_revision
from tallyql.storage.rollups.declarations import ROLLUP_TABLES
from tallyql.storage.tables import audit_events, events, workspaces
from tests.support.server import create_key, reset_database

ROOT = Path(__file__).resolve().parent.parent


async def _run(*args: str) -> Result:
    """Runs the command in a thread: it calls asyncio.run itself."""
    result = await asyncio.to_thread(CliRunner().invoke, main, list(args), catch_exceptions=False)
    return result


async def _principal(database_url: str, tmp_path: Path, key: str):  # type: ignore[no-untyped-def]
    services = await start_services(Settings(data_dir=tmp_path, database_url=database_url))
    try:
        return await services.keys.authenticate(key)
    finally:
        await services.stop()


async def test_keys_create_list_revoke(database_url: str, tmp_path: Path) -> None:
    await reset_database(database_url)
    # a real process, as scripts run it: the key alone on the last line of stdout
    key = create_key(database_url, tmp_path, role="viewer")
    assert key.startswith("tq_") and " " not in key
    principal = await _principal(database_url, tmp_path, key)
    assert principal is not None
    assert (principal.workspace_name, principal.role.value) == ("acme", "viewer")

    created = await _run(
        "keys",
        "create",
        "--workspace",
        "globex",
        "--role",
        "ingest",
        "--name",
        "collector",
        "--database-url",
        database_url,
    )
    assert created.exit_code == 0, created.output
    second = created.stdout.strip().splitlines()[-1]
    second_id = second.split("_")[1]
    assert "the secret is shown only now" in created.stderr
    assert second not in created.stderr

    listed = await _run("keys", "list", "--database-url", database_url)
    rows = [line.split("\t") for line in listed.stdout.strip().splitlines()]
    assert sorted((r[1], r[2], r[3], r[4]) for r in rows) == [
        ("acme", "viewer", "viewer key", "active"),
        ("globex", "ingest", "collector", "active"),
    ]
    assert all(r[0] in (second_id, key.split("_")[1]) for r in rows)
    assert key not in listed.stdout and second not in listed.stdout  # never the secrets
    only = await _run("keys", "list", "--workspace", "globex", "--database-url", database_url)
    assert [line.split("\t")[0] for line in only.stdout.strip().splitlines()] == [second_id]

    revoked = await _run("keys", "revoke", second_id, "--database-url", database_url)
    assert revoked.exit_code == 0 and revoked.stdout.strip() == f"revoked {second_id}"
    assert await _principal(database_url, tmp_path, second) is None
    again = await _run("keys", "revoke", second_id, "--database-url", database_url)
    assert again.exit_code != 0 and f"no active key {second_id}" in again.output
    active = await _run("keys", "list", "--database-url", database_url)
    assert second_id not in active.stdout
    everything = await _run("keys", "list", "--all", "--database-url", database_url)
    assert f"{second_id}\tglobex\tingest\tcollector\trevoked" in everything.stdout

    db = Database(database_url)
    try:
        async with db.read() as conn:
            rows = (
                await conn.execute(
                    select(
                        audit_events.c.action, audit_events.c.resource_id, audit_events.c.actor_id
                    )
                )
            ).all()
    finally:
        await db.dispose()
    assert sorted(rows) == sorted(
        [
            ("create", key.split("_")[1], "cli"),
            ("create", second_id, "cli"),
            ("delete", second_id, "cli"),
        ]
    )

    bad = await _run(
        "keys", "create", "--workspace", "x", "--role", "owner", "--database-url", database_url
    )
    assert bad.exit_code != 0


async def test_migrate_is_idempotent(database_url: str, tmp_path: Path) -> None:
    await reset_database(database_url)
    for _ in range(2):
        result = await _run("migrate", "--database-url", database_url)
        assert result.exit_code == 0, result.output
        revision = result.stdout.strip().rsplit(" ", 1)[-1]
    db = Database(database_url)
    try:
        assert await current_revision(db) == revision
    finally:
        await db.dispose()
    assert revision != "None"


async def test_migrate_defaults_to_sqlite_under_the_data_dir(tmp_path: Path) -> None:
    result = await _run("migrate", "--data-dir", str(tmp_path / "data"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "data" / "tallyql.db").exists()


def test_export_schema_matches_the_checked_in_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["export-schema"])
    assert result.exit_code == 0
    assert result.stdout == (ROOT / "schema.graphql").read_text()
    assert "type Query" in result.stdout and "ingestEvents" in result.stdout
    out = tmp_path / "schema.graphql"
    CliRunner().invoke(main, ["export-schema", "-o", str(out)])
    assert out.read_text() == result.stdout


def test_bad_settings_are_reported(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TALLYQL_MAX_BATCH_EVENTS", "20000")
    result = CliRunner().invoke(main, ["migrate"])
    assert result.exit_code != 0
    assert "TALLYQL_MAX_BATCH_EVENTS must be between 1 and 10000" in result.output
    monkeypatch.setenv("TALLYQL_MAX_BATCH_EVENTS", "many")
    result = CliRunner().invoke(main, ["migrate"])
    assert "TALLYQL_MAX_BATCH_EVENTS='many' is not a valid value" in result.output


async def _hourly(database_url: str) -> tuple[Counter[int], Counter[int]]:
    """(events per UTC hour recomputed from the raw timestamps, requests per hour as the hourly
    totals rollup holds them), in epoch seconds, for the workspace `demo`."""
    db = Database(database_url)
    try:
        async with db.read() as conn:
            ws = (
                await conn.execute(select(workspaces.c.id).where(workspaces.c.name == "demo"))
            ).scalar_one()
            stamps = await conn.execute(select(events.c.ts).where(events.c.workspace_id == ws))
            raw = Counter(int(ts.timestamp()) // 3600 * 3600 for (ts,) in stamps)
            table = ROLLUP_TABLES["rollup_totals_h"]
            rows = await conn.execute(
                select(table.c.period, table.c.requests).where(table.c.workspace_id == ws)
            )
            rolled: Counter[int] = Counter()
            for period, requests in rows:
                rolled[int(period)] += int(requests)
        return raw, rolled
    finally:
        await db.dispose()


async def test_demo_and_rollups_rebuild_end_to_end(database_url: str, tmp_path: Path) -> None:
    """`tallyql demo` writes its events once (a second run finds them all present) and
    `tallyql rollups rebuild` recomputes the rollups that were wiped, from the raw events."""
    await reset_database(database_url)
    common = ("--database-url", database_url, "--data-dir", str(tmp_path))
    args = ("demo", "--events", "400", "--days", "2", "--seed", "5", *common)
    first = await _run(*args)
    assert first.exit_code == 0, first.output
    assert first.stdout.startswith("wrote 400 events (0 already present) into workspace demo")
    again = await _run(*args)
    assert again.stdout.startswith("wrote 0 events (400 already present)"), again.output
    raw, rolled = await _hourly(database_url)
    # two days of traffic: the first and last busy hours lie more than a day apart (how many
    # hours are busy depends on the hour the demo runs, as its traffic follows the clock)
    assert raw.total() == 400 and max(raw) - min(raw) > 24 * 3600
    assert rolled == raw

    db = Database(database_url)
    try:
        async with db.write() as conn:
            for table in ROLLUP_TABLES.values():
                await conn.execute(delete(table))
    finally:
        await db.dispose()
    assert (await _hourly(database_url))[1] == Counter()
    rebuilt = await _run("rollups", "rebuild", *common)
    assert rebuilt.exit_code == 0, rebuilt.output
    assert rebuilt.stdout.strip().endswith("over 400 events"), rebuilt.stdout
    assert (await _hourly(database_url))[1] == raw
