"""Retention: expired raw data is gone from every field, rollups inside their own retention
still answer, each purge is audited and reported in /health; PostgreSQL drops whole day
partitions and keeps ingesting into dropped days."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
import time_machine
from sqlalchemy import func, select, text

from tallyql.config import Settings
from tallyql.storage.tables import event_keys, events, payloads, session_models, sessions
from tests.conftest import Api, running_api
from tests.support.helpers import iso

# Every test runs from today's noon UTC on (the clock set at its start), so the days built here
# and the cut-offs and partitions the server computes from its own "now" are the same days at
# any hour the suite runs, and a test that crosses midnight cannot split them.
NOW = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
OLD = (NOW - timedelta(days=200)).replace(hour=12, minute=0, second=0, microsecond=0)
ANCIENT = (NOW - timedelta(days=500)).replace(hour=12, minute=0, second=0, microsecond=0)
RECENT = (NOW - timedelta(days=10)).replace(hour=12, minute=0, second=0, microsecond=0)


@pytest.fixture(autouse=True)
def at_noon() -> Iterator[None]:
    with time_machine.travel(NOW, tick=True):
        yield


def day_range(at: datetime) -> dict[str, str]:
    start = at.replace(hour=0)
    return {"start": iso(start), "end": iso(start + timedelta(days=1))}


def batch(prefix: str, at: datetime, n: int, **extra: Any) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        ev = {
            "id": f"{prefix}{i}",
            "timestamp": iso(at + timedelta(minutes=i)),
            "provider": "openai",
            "model": "gpt-4o",
            "input_tokens": 10,
            "output_tokens": 5,
            "cost_usd": 0.001,
            "user_id": "u1",
            "session_id": f"{prefix}-s{i % 3}",
            "request": {"q": i},
            **extra,
        }
        if i % 4 == 0:
            ev |= {
                "kind": "tool_call",
                "tool": "search",
                "mcp_server": "web",
                "status": "blocked",
                "policy_id": "p1",
                "policy_name": "P",
            }
        out.append(ev)
    return out


async def count(api: Api, table: Any, **where: Any) -> int:
    query = select(func.count()).select_from(table)
    for column, value in where.items():
        query = query.where(table.c[column] == value)
    async with api.services.db.read() as conn:
        return int((await conn.execute(query)).scalar_one())


async def ids(api: Api, key: str) -> set[str]:
    data = await api.data(key, "{ requests(first: 100) { nodes { id } } }")
    return {n["id"] for n in data["requests"]["nodes"]}


async def total(api: Api, key: str, at: datetime, raw: bool = False) -> float:
    headers = {"Authorization": f"Bearer {key}", **({"X-Tallyql-Plan": "raw"} if raw else {})}
    response = await api.client.post(
        "/graphql",
        headers=headers,
        json={
            "query": "query($r: TimeRangeInput!) { overview(range: $r) { totalRequests } "
            "toolUsage(range: $r) { executions } security(range: $r) { blockedCalls } }",
            "variables": {"r": day_range(at)},
        },
    )
    data = response.json()["data"]
    return data["overview"]["totalRequests"], data["toolUsage"]["executions"]


async def test_purge(settings: Settings, db_kind: str) -> None:
    tight = replace(settings, retention_interval_seconds=0, retention_batch_rows=7)
    async with running_api(tight, db_kind) as api:
        acme, globex = await api.key("acme"), await api.key("globex")
        acme_ws = (await api.services.keys.authenticate(acme)).workspace_id  # type: ignore[union-attr]
        await api.ingest(
            acme, batch("old", OLD, 30) + batch("anc", ANCIENT, 9) + batch("new", RECENT, 12)
        )
        # a session that began before the cutoff and is still going is kept whole
        await api.ingest(
            acme,
            [
                {"id": "span-a", "timestamp": iso(OLD), "session_id": "span"},
                {"id": "span-b", "timestamp": iso(RECENT), "session_id": "span"},
            ],
        )
        await api.ingest(globex, batch("gold", OLD, 5))
        audit = [
            {
                "id": "au-old",
                "timestamp": iso(OLD),
                "actor_type": "user",
                "action": "login",
                "resource_type": "app",
            },
            {
                "id": "au-new",
                "timestamp": iso(RECENT),
                "actor_type": "user",
                "action": "login",
                "resource_type": "app",
            },
        ]
        response = await api.client.post(
            "/v1/audit-events",
            content=orjson.dumps(audit),
            headers={"Authorization": f"Bearer {acme}"},
        )
        assert response.json()["accepted"] == 2
        assert await total(api, acme, OLD) == (31, 8)

        report = await api.services.retention.run_once()  # type: ignore[union-attr]
        assert report["ok"] is True, report
        purged = report["purged"]
        assert purged["events"] == 30 + 9 + 5 + 1
        assert purged["payloads"] == 30 + 9 + 5
        # au-old, and the BLOCK audit event each blocked call records at its own time
        expired = batch("old", OLD, 30) + batch("anc", ANCIENT, 9) + batch("gold", OLD, 5)
        assert purged["audit_events"] == 1 + sum(e.get("status") == "blocked" for e in expired)
        assert purged["sessions"] == 3 + 3 + 3
        assert purged["rollup_rows"] > 0
        if db_kind == "postgresql":
            assert purged["event_keys"] == 45
            assert purged["partitions_dropped"] == 2 * 2  # events and payloads of two days

        # raw data is gone from every field
        assert await ids(api, acme) == {f"new{i}" for i in range(12)} | {"span-b"}
        detail = '{ request(id: "old3") { id } session(id: "old-s1") { id } }'
        assert await api.data(acme, detail) == {"request": None, "session": None}
        assert await count(api, events) == 12 + 1
        assert await count(api, payloads) == 12
        if db_kind == "postgresql":
            assert await count(api, event_keys) == 13
        listed = await api.data(
            acme,
            "query($r: TimeRangeInput!) { sessions(range: $r, "
            "first: 50) { nodes { id requestCount } } }",
            {"r": {"start": iso(ANCIENT - timedelta(days=1)), "end": iso(NOW)}},
        )
        assert {(n["id"], n["requestCount"]) for n in listed["sessions"]["nodes"]} == {
            ("new-s0", 4),
            ("new-s1", 4),
            ("new-s2", 4),
            ("span", 2),
        }
        assert await count(api, session_models, session_id="old-s0") == 0
        assert await count(api, sessions, workspace_id=acme_ws) == 4
        trail = await api.data(
            acme, "{ auditEvents(first: 100) { nodes { id resourceType action details } } }"
        )
        nodes = trail["auditEvents"]["nodes"]
        assert "au-old" not in {n["id"] for n in nodes} and "au-new" in {n["id"] for n in nodes}
        purge = [n for n in nodes if n["resourceType"] == "retention"]
        assert len(purge) == 1 and purge[0]["action"] == "DELETE"
        assert purge[0]["details"]["purged"]["events"] == 30 + 9 + 1
        acme_expired = batch("old", OLD, 30) + batch("anc", ANCIENT, 9)
        blocked = sum(e.get("status") == "blocked" for e in acme_expired)
        assert purge[0]["details"]["purged"]["audit_events"] == 1 + blocked
        theirs = await api.data(
            globex, '{ auditEvents(filter: {resourceTypes: ["retention"]}) { nodes { details } } }'
        )
        assert theirs["auditEvents"]["nodes"][0]["details"]["purged"]["events"] == 5

        # rollups inside their own retention still answer; raw and expired rollups do not
        assert await total(api, acme, OLD) == (31, 8)
        assert await total(api, globex, OLD) == (5, 2)
        assert await total(api, acme, OLD, raw=True) == (0, 0)
        assert await total(api, acme, ANCIENT) == (0, 0)
        assert await total(api, acme, RECENT) == (12 + 1, 3)

        health = (await api.client.get("/health")).json()
        assert health["jobs"]["retention"]["purged"] == purged
        assert health["jobs"]["retention"]["raw_cutoff"].startswith(
            (NOW - timedelta(days=90)).strftime("%Y-%m-%d")
        )

        # a second run finds nothing and audits nothing
        again = await api.services.retention.run_once()  # type: ignore[union-attr]
        assert not any(again["purged"].values()), again
        trail = await api.data(
            acme, '{ auditEvents(filter: {resourceTypes: ["retention"]}) { totalCount } }'
        )
        assert trail["auditEvents"]["totalCount"] == 1

        # late events for a purged day are still accepted (the partition comes back)
        late = await api.ingest(acme, batch("late", OLD, 2))
        assert late["accepted"] == 2
        assert {"late0", "late1"} <= await ids(api, acme)
        if db_kind == "postgresql":
            async with api.services.db.read() as conn:
                names = set(
                    (
                        await conn.execute(
                            text(
                                "SELECT relname FROM pg_class WHERE relname LIKE 'events\\_p%' "
                                "AND relkind = 'r'"
                            )
                        )
                    ).scalars()
                )
            assert f"events_p{OLD:%Y%m%d}" in names
            assert f"events_p{ANCIENT:%Y%m%d}" not in names
            ahead = (NOW + timedelta(days=2)).date()
            assert f"events_p{ahead:%Y%m%d}" in names  # made ahead of ingest
            assert again["partitions_ready_until"] == ahead.isoformat()


async def test_retention_settings(settings: Settings, db_kind: str) -> None:
    keep_raw = replace(
        settings, retention_interval_seconds=0, retention_days=0, rollup_retention_days=100
    )
    async with running_api(keep_raw, db_kind) as api:
        key = await api.key()
        await api.ingest(key, batch("old", OLD, 4))
        report = await api.services.retention.run_once()  # type: ignore[union-attr]
        # rollups are never purged before the raw events they summarise
        assert report["raw_cutoff"] is None and report["rollup_cutoff"] is None
        assert not any(report["purged"].values())
        assert await total(api, key, OLD) == (4, 1)
        assert len(await ids(api, key)) == 4
    background = replace(settings, retention_interval_seconds=3600)
    async with running_api(background, db_kind) as api:
        health = (await api.client.get("/health")).json()
        assert health["background_tasks"]["retention"] is True
