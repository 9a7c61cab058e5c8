"""Scheduled reports across real `tallyql serve` processes on one PostgreSQL database: two
replicas polling every 0.2 s run a due moment exactly once, and a moment that came while every
replica was down runs once when one starts again. (Several processes share a database only on
PostgreSQL; the one-process race on both databases is in test_reports.py.)"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import update

from tallyql.storage.database import Database
from tallyql.storage.report_tables import reports
from tests.support.server import create_key, reset_database, start_server

CREATE = """mutation { createReport(input: {name: "r", schedule: "0 8 * * *",
  sections: [{kind: OVERVIEW}], formats: [HTML]}) { report { id } userErrors { message } } }"""
RUNS = """query($id: ID!) { report(id: $id) { nextRunAt runs(first: 10) { totalCount
  nodes { status dueAt } } } }"""


def _make_due(database_url: str, report_id: str, when: datetime) -> None:
    async def go() -> None:
        db = Database(database_url)
        try:
            async with db.write() as conn:
                await conn.execute(
                    update(reports).where(reports.c.id == report_id).values(next_run_at=when)
                )
        finally:
            await db.dispose()

    asyncio.run(go())


def _runs(url: str, key: str, report_id: str) -> dict:
    answer = httpx.post(
        f"{url}/graphql",
        json={"query": RUNS, "variables": {"id": report_id}},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    return answer.json()["data"]["report"]


def _wait_for_runs(url: str, key: str, report_id: str, count: int) -> dict:
    deadline = time.monotonic() + 60
    while True:
        found = _runs(url, key, report_id)
        done = [n for n in found["runs"]["nodes"] if n["status"] != "RUNNING"]
        if len(done) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_two_replicas_run_a_moment_once_and_a_restart_runs_a_missed_one_postgresql(
    postgres_database: str, tmp_path: Path
) -> None:
    asyncio.run(reset_database(postgres_database))
    key = create_key(postgres_database, tmp_path, role="admin")
    env = {"TALLYQL_REPORT_POLL_SECONDS": "0.2"}
    one = start_server(postgres_database, tmp_path, "one", env)
    two = start_server(postgres_database, tmp_path, "two", env)
    try:
        made = httpx.post(
            f"{one.url}/graphql", json={"query": CREATE}, headers={"Authorization": f"Bearer {key}"}
        ).json()["data"]["createReport"]
        report_id = made["report"]["id"]
        due = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
        _make_due(postgres_database, report_id, due)
        found = _wait_for_runs(two.url, key, report_id, 1)
        time.sleep(1.5)  # both replicas polled several times meanwhile
        found = _runs(two.url, key, report_id)
        assert found["runs"]["totalCount"] == 1
        (run,) = found["runs"]["nodes"]
        assert run["status"] == "SUCCEEDED"
        assert datetime.fromisoformat(run["dueAt"]) == due
        assert datetime.fromisoformat(found["nextRunAt"]) > datetime.now(UTC)
    finally:
        one.stop()
        two.stop()

    # every replica down while the next moment comes (twice over): one run at start
    missed = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    _make_due(postgres_database, report_id, missed)
    again = start_server(postgres_database, tmp_path, "again", env)
    try:
        found = _wait_for_runs(again.url, key, report_id, 2)
        time.sleep(1.0)
        found = _runs(again.url, key, report_id)
        assert found["runs"]["totalCount"] == 2
        assert datetime.fromisoformat(found["runs"]["nodes"][0]["dueAt"]) == missed
        assert datetime.fromisoformat(found["nextRunAt"]) > datetime.now(UTC)
    finally:
        again.stop()
