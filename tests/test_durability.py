"""Every acknowledged event survives `kill -9` of the server; no call is half-written."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import orjson
from sqlalchemy import func, select

from tallyql.storage.database import Database
from tallyql.storage.tables import sessions
from tests.support.helpers import llm
from tests.support.server import create_key, reset_database, start_server

SENDERS = 4
BATCH = 250
ACKS_BEFORE_KILL = 10

COUNT_BY_TRACE = """query($t: String!) {
  requests(filter: {traces: [$t]}, first: 1) { totalCount }
}"""


async def test_acknowledged_events_survive_kill_9(database_url: str, tmp_path: Path) -> None:
    await reset_database(database_url)
    key = create_key(database_url, tmp_path, role="member")
    server = start_server(database_url, tmp_path, "first")
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    acked: list[str] = []
    sent: list[str] = []
    killed = asyncio.Event()

    async def sender(n: int, client: httpx.AsyncClient) -> None:
        for b in range(1000):
            trace = f"batch-{n}-{b}"
            body = orjson.dumps(
                [
                    llm(f"{trace}-{i}", trace_id=trace, session_id=f"s{n}", request={"i": i})
                    for i in range(BATCH)
                ]
            )
            sent.append(trace)
            try:
                response = await client.post("/v1/events", content=body, headers=headers)
            except httpx.HTTPError:
                return  # the server is gone: this call was never acknowledged
            if killed.is_set():
                return
            assert response.status_code == 200, response.text
            assert response.json()["accepted"] == BATCH
            acked.append(trace)
            if len(acked) >= ACKS_BEFORE_KILL:
                server.kill()  # right after the 200, with the other senders' calls in flight
                killed.set()
                return

    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            await asyncio.gather(*(sender(n, client) for n in range(SENDERS)))
    finally:
        server.stop()
    assert killed.is_set()
    assert len(acked) >= ACKS_BEFORE_KILL

    restarted = start_server(database_url, tmp_path, "second")
    try:
        async with httpx.AsyncClient(base_url=restarted.url, timeout=30) as client:

            async def stored(trace: str) -> int:
                response = await client.post(
                    "/graphql",
                    json={"query": COUNT_BY_TRACE, "variables": {"t": trace}},
                    headers=headers,
                )
                body = response.json()
                assert "errors" not in body, body
                return body["data"]["requests"]["totalCount"]

            counts = {trace: await stored(trace) for trace in sent}
            for trace in acked:
                assert counts[trace] == BATCH, (trace, counts[trace])
            # calls cut off by the kill are all or nothing
            assert set(counts.values()) <= {0, BATCH}, counts
            total = sum(counts.values())
            response = await client.post(
                "/graphql", json={"query": "{ requests { totalCount } }"}, headers=headers
            )
            assert response.json()["data"]["requests"]["totalCount"] == total
            # the sessions were written in the same transactions as their events
            db = Database(database_url)
            try:
                async with db.read() as conn:
                    in_sessions = (
                        await conn.execute(select(func.sum(sessions.c.requests)))
                    ).scalar_one()
            finally:
                await db.dispose()
            assert in_sessions == total
            response = await client.get("/health")
            assert response.json()["status"] == "ok"
            # and the restarted server takes new events
            response = await client.post(
                "/v1/events", content=orjson.dumps([llm("after-restart")]), headers=headers
            )
            assert response.json()["accepted"] == 1
    finally:
        restarted.stop()
