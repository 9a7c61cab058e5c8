"""The daily OpenRouter sync against a local fake of its API: a connected workspace's
activity is imported once a day and on demand (idempotent, exactly once across racing
replicas), credits and the key's usage are read through, failures are kept on the connection,
the key is never shown, and only admins connect."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest

from tallyql.auth.principal import Role
from tallyql.config import Settings
from tallyql.imports.sync import ProviderSync
from tests.conftest import Api
from tests.support.helpers import iso
from tests.support.notify_helpers import quiet_settings

KEY = "sk-or-v1-management-key"
DAY = datetime(2025, 11, 19, tzinfo=UTC)
ACTIVITY = {
    "data": [
        {
            "date": "2025-11-19",
            "model": "openai/gpt-4.1",
            "model_permaslug": "openai/gpt-4.1-2025-04-14",
            "endpoint_id": "ep-1",
            "provider_name": "OpenAI",
            "usage": 0.75,
            "byok_usage_inference": 0,
            "requests": 4,
            "prompt_tokens": 400,
            "completion_tokens": 40,
            "reasoning_tokens": 0,
        }
    ]
}


@dataclass
class FakeOpenRouter:
    url: str
    paths: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def openrouter() -> Iterator[FakeOpenRouter]:
    fake: FakeOpenRouter

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with fake.lock:
                fake.paths.append(self.path)
            if self.headers.get("Authorization") != f"Bearer {KEY}":
                code, body = (
                    401,
                    {"error": {"message": f"bad key {self.headers.get('Authorization')}"}},
                )
            elif self.path == "/api/v1/activity":
                code, body = 200, ACTIVITY
            elif self.path == "/api/v1/credits":
                code, body = 200, {"data": {"total_credits": 100.5, "total_usage": 25.25}}
            elif self.path == "/api/v1/key":
                body = {"label": "tallyql", "usage": 25.25, "limit": 50, "limit_remaining": 24.75,
                        "is_free_tier": False}  # fmt: skip
                code, body = 200, {"data": body}
            else:
                code, body = 404, {"error": "no"}
            raw = orjson.dumps(body)
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake = FakeOpenRouter(f"http://127.0.0.1:{server.server_address[1]}/api/v1")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def settings(database_url: str, tmp_path: Path, openrouter: FakeOpenRouter) -> Settings:
    return quiet_settings(
        database_url, tmp_path, openrouter_base_url=openrouter.url, provider_sync_poll_seconds=0.0
    )


CONNECT = """mutation($k: String!) { connectProvider(apiKey: $k) {
  connection { provider lastSyncAt } userErrors { field message } } }"""
STATE = """{ providerConnection { provider lastSyncAt lastSyncStatus lastError lastResult } }"""
SYNC = """mutation { syncProviderActivity { connection { lastSyncStatus lastResult }
  userErrors { field message } } }"""
TOTAL = """query($r: TimeRangeInput!) { overview(range: $r) { totalRequests costUsd } }"""
RANGE = {"start": iso(DAY), "end": iso(DAY + timedelta(days=1))}


async def test_connect_sync_and_read_the_account(api: Api, openrouter: FakeOpenRouter) -> None:
    admin = await api.key()
    viewer = await api.key(role=Role.VIEWER)
    assert (await api.data(viewer, STATE))["providerConnection"] is None
    assert (await api.data(viewer, "{ providerCredits { remainingUsd } }"))[
        "providerCredits"
    ] is None
    denied = await api.graphql(viewer, CONNECT, {"k": KEY})
    assert denied["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    made = (await api.data(admin, CONNECT, {"k": KEY}))["connectProvider"]
    assert made["userErrors"] == [] and made["connection"] == {
        "provider": "OPENROUTER",
        "lastSyncAt": None,
    }

    synced = (await api.data(admin, SYNC))["syncProviderActivity"]
    assert synced["userErrors"] == []
    assert synced["connection"]["lastSyncStatus"] == "succeeded"
    assert synced["connection"]["lastResult"]["accepted"] == 4
    total = (await api.data(viewer, TOTAL, {"r": RANGE}))["overview"]
    assert total == {"totalRequests": 4, "costUsd": 0.75}

    # the daily job: not due again within a day; due after one, and idempotent
    assert api.services.provider_sync is not None
    job = api.services.provider_sync
    assert await job.sync_due() == 0
    assert await job.sync_due(datetime.now(UTC) + timedelta(days=1, minutes=1)) == 1
    state = (await api.data(viewer, STATE))["providerConnection"]
    assert state["lastResult"]["duplicates"] == 4 and state["lastResult"]["accepted"] == 0
    assert (await api.data(viewer, TOTAL, {"r": RANGE}))["overview"]["totalRequests"] == 4

    credits = await api.data(
        viewer, "{ providerCredits { totalCreditsUsd totalUsageUsd remainingUsd } }"
    )
    assert credits["providerCredits"] == {
        "totalCreditsUsd": 100.5,
        "totalUsageUsd": 25.25,
        "remainingUsd": 75.25,
    }
    key = await api.data(
        viewer, "{ providerKey { label usageUsd limitUsd limitRemainingUsd isFreeTier } }"
    )
    assert key["providerKey"] == {
        "label": "tallyql",
        "usageUsd": 25.25,
        "limitUsd": 50.0,
        "limitRemainingUsd": 24.75,
        "isFreeTier": False,
    }
    everything = orjson.dumps(await api.data(admin, STATE)).decode()
    assert KEY not in everything
    trail = orjson.dumps(await api.data(admin, "{ auditEvents(first: 50) { nodes { details } } }"))
    assert KEY not in trail.decode()


async def test_failures_are_kept_and_replicas_sync_once(
    api: Api, openrouter: FakeOpenRouter
) -> None:
    admin = await api.key()
    await api.data(admin, CONNECT, {"k": "sk-or-wrong"})
    failed = (await api.data(admin, SYNC))["syncProviderActivity"]["connection"]
    assert failed["lastSyncStatus"] == "failed"
    state = (await api.data(admin, STATE))["providerConnection"]
    assert state["lastError"] == "OpenRouter answered 401 to GET /activity"
    assert "sk-or-wrong" not in orjson.dumps(state).decode()
    body = await api.graphql(admin, "{ providerCredits { remainingUsd } }")
    assert body["errors"][0]["extensions"]["code"] == "PROVIDER_UNAVAILABLE"

    await api.data(admin, CONNECT, {"k": KEY})  # a new key: due at once
    before = len(openrouter.paths)
    replicas = [
        ProviderSync(api.services.db, api.services.ingest, openrouter.url, 10_000, 0.0, {})
        for _ in range(4)
    ]
    counts = await asyncio.gather(*(r.sync_due() for r in replicas))
    assert sum(counts) == 1
    assert openrouter.paths[before:] == ["/api/v1/activity"]
    bad = await api.data(admin, CONNECT, {"k": "has a space"})
    assert bad["connectProvider"]["userErrors"][0]["field"] == "apiKey"
