"""Shared pieces of the live subscription tests: the subscription document, one client API
over the three transports, events with known values, and the independent expectations
(plain-Python sums of the ingested events) that the items are checked against."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tallyql.auth.principal import Role
from tallyql.live.bus import LiveBus
from tallyql.live.compact import LiveRow, row_of_mapping
from tallyql.services import Services
from tests.support.helpers import iso
from tests.support.live_client import LEGACY_WS, TRANSPORT_WS, LiveServer, sse_items, subscribe

SSE = "sse"
TRANSPORTS = (TRANSPORT_WS, LEGACY_WS, SSE)

TOTALS = """
  requests errors inputTokens outputTokens cacheReadTokens cacheWriteTokens reasoningTokens
  totalTokens costUsd
"""
REQUEST_FIELDS = """
  id timestamp committedAt kind status statusCode provider model userId apiKeyId agentId
  agentInstanceId sessionId traceId tool mcpServer gateway inputTokens outputTokens
  cacheReadTokens cacheWriteTokens reasoningTokens totalTokens costUsd latencyMs ttftMs tags
"""
LIVE_QUERY = f"""
subscription Live($filter: EventFilter, $types: [LiveEventType!], $interval: Int! = 10,
                  $timezone: String! = "UTC") {{
  events(filter: $filter, types: $types, interval: $interval, timezone: $timezone) {{
    __typename
    ... on RequestEvent {{ {REQUEST_FIELDS} }}
    ... on ErrorEvent {{ {REQUEST_FIELDS} errorType errorMessage policyId policyName }}
    ... on CostUpdate {{
      at since todayStart timezone
      sinceStart {{ {TOTALS} }}
      today {{ {TOTALS} }}
    }}
    ... on AuditEvent {{
      id timestamp actorId actorType action resourceType resourceId sourceIp outcome details
    }}
    ... on Lagged {{ count }}
  }}
}}
"""


class LiveClient:
    """One subscription over any transport; `next()` returns each `events` item."""

    def __init__(self, pull: Callable[[float], Any]) -> None:
        self._pull = pull

    async def next(self, wait: float = 10.0) -> dict[str, Any]:
        item: dict[str, Any] = await self._pull(wait)
        return item

    async def until(self, typename: str, wait: float = 10.0) -> dict[str, Any]:
        """Skip items until one of this __typename."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            item = await self.next(max(deadline - loop.time(), 0.01))
            if item["__typename"] == typename:
                return item

    async def take(self, count: int, wait: float = 10.0) -> list[dict[str, Any]]:
        """The next `count` items."""
        return [await self.next(wait) for _ in range(count)]

    async def nothing_within(self, seconds: float) -> None:
        """Assert that no item arrives within `seconds`."""
        try:
            item = await self.next(seconds)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected item {item}")


@asynccontextmanager
async def open_live(
    server: LiveServer,
    transport: str,
    key: str | None,
    variables: dict[str, Any] | None = None,
    header_key: str | None = None,
    query: str = LIVE_QUERY,
) -> AsyncIterator[LiveClient]:
    """A subscription to `query` over `transport` (not yet known to be registered)."""
    if transport == SSE:
        queue: asyncio.Queue[dict[str, Any] | BaseException] = asyncio.Queue()

        async def pump() -> None:
            try:
                async for item in sse_items(server, header_key or key or "", query, variables):
                    queue.put_nowait(item)
                queue.put_nowait(EOFError("the SSE stream ended"))
            except Exception as exc:  # handed to the reader
                queue.put_nowait(exc)

        async def pull(wait: float) -> dict[str, Any]:
            async with asyncio.timeout(wait):
                got = await queue.get()
            if isinstance(got, BaseException):
                raise got
            return got

        task = asyncio.create_task(pump())
        try:
            yield LiveClient(pull)
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        return
    async with subscribe(
        server, key, query, variables, protocol=transport, header_key=header_key
    ) as sub:
        yield LiveClient(sub.next)


def bus_of(server: LiveServer) -> LiveBus:
    services: Services = server.app.state.services
    assert services.live is not None
    return services.live.service.bus


async def wait_subscribers(server: LiveServer, count: int, wait: float = 10.0) -> None:
    """Until this server's bus has exactly `count` subscribers."""
    bus = bus_of(server)
    async with asyncio.timeout(wait):
        while True:
            if bus.subscriber_count == count:
                return
            await asyncio.sleep(0.01)


async def make_key(server: LiveServer, workspace: str = "acme", role: Role = Role.ADMIN) -> str:
    services: Services = server.app.state.services
    key, _ = await services.keys.create(workspace, role, f"live test {role.value}")
    return key


async def post(url: str, path: str, key: str, body: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        response = await client.post(path, json=body, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def ingest(url: str, key: str, events: list[dict[str, Any]]) -> None:
    """POST /v1/events; returns after commit, asserting that every event was accepted."""
    result = await post(url, "/v1/events", key, events)
    assert result["accepted"] == len(events), result


# ---------------------------------------------------------------------- events with known values

MODELS = (("openai", "gpt-4o-mini"), ("anthropic", "claude-3-5-sonnet"), ("openai", "gpt-4o"))
ERROR_TYPES = ("rate_limit", "timeout", "model_error")


def mixed_events(
    prefix: str, count: int, now: datetime | None = None, spacing: timedelta = timedelta(seconds=1)
) -> list[dict[str, Any]]:
    """`count` events with varied values: every third an error, some blocked, some with cache
    and reasoning tokens, tags, users, a provided cost (exact in nano-USD), one dated two
    days back; `spacing` apart, from 30 seconds ago backwards."""
    now = now or datetime.now(UTC)
    out: list[dict[str, Any]] = []
    for i in range(count):
        provider, model = MODELS[i % len(MODELS)]
        event: dict[str, Any] = {
            "id": f"{prefix}-{i:04d}",
            "timestamp": iso(now - timedelta(seconds=30) - i * spacing),
            "provider": provider,
            "model": model,
            "user_id": f"user-{i % 4}",
            "agent_id": f"agent-{i % 2}",
            "session_id": f"s-{i % 5}",
            "trace_id": f"t-{i}",
            "gateway": "gw-1" if i % 2 else "gw-2",
            "input_tokens": 100 + 17 * i,
            "output_tokens": 10 + 3 * i,
            "cache_read_tokens": 5 * (i % 3),
            "cache_write_tokens": i % 2,
            "reasoning_tokens": 2 * (i % 4),
            "cost_usd": (1234 + 101 * i) / 1_000_000,
            "latency_ms": 250 + 7 * i,
            "ttft_ms": 40 + i,
            "status_code": 200,
            "tags": [f"team-{i % 3}", "live"],
        }
        if i % 3 == 2:
            event.update(
                status="error",
                status_code=429 if i % 2 else 504,
                error_type=ERROR_TYPES[(i // 3) % len(ERROR_TYPES)],
                error_message=f"failure {i}",
                policy_id=f"pol-{i}",
                policy_name=f"policy {i}",
            )
        elif i % 7 == 6:
            event.update(status="blocked", error_type="policy_blocked", policy_id="pol-pii")
        if i == 4:
            event["timestamp"] = iso(now - timedelta(days=2))  # counts since start, not today
        out.append(event)
    return out


def nano(event: dict[str, Any]) -> int:
    return round(event.get("cost_usd", 0.0) * 1_000_000_000)


def parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def check_request_item(item: dict[str, Any], event: dict[str, Any]) -> None:
    """An item (RequestEvent or ErrorEvent) shows exactly the ingested event's values."""
    is_error = event.get("status") == "error"
    assert item["id"] == event["id"]
    assert parse_ts(item["timestamp"]) == parse_ts(event["timestamp"])
    assert item["kind"] == event.get("kind", "llm_call").upper()
    assert item["status"] == event.get("status", "success").upper()
    expected = {
        "statusCode": event.get("status_code"),
        "provider": event.get("provider"),
        "model": event.get("model"),
        "userId": event.get("user_id"),
        "agentId": event.get("agent_id"),
        "sessionId": event.get("session_id"),
        "traceId": event.get("trace_id"),
        "gateway": event.get("gateway"),
        "tool": event.get("tool"),
        "inputTokens": event.get("input_tokens", 0),
        "outputTokens": event.get("output_tokens", 0),
        "cacheReadTokens": event.get("cache_read_tokens", 0),
        "cacheWriteTokens": event.get("cache_write_tokens", 0),
        "reasoningTokens": event.get("reasoning_tokens", 0),
        "totalTokens": event.get("input_tokens", 0) + event.get("output_tokens", 0),
        "costUsd": nano(event) / 1e9,
        "latencyMs": event.get("latency_ms"),
        "ttftMs": event.get("ttft_ms"),
        "tags": sorted(set(event.get("tags", []))),  # ingest keeps tags as a sorted set
    }
    got = {k: item[k] for k in expected}
    assert got == expected, {k: (got[k], v) for k, v in expected.items() if got[k] != v}
    if item["__typename"] == "ErrorEvent":  # (with types [REQUEST], errors come as requests)
        assert is_error, item
        assert item["errorType"] == event["error_type"].upper()
        assert item["errorMessage"] == event.get("error_message")
        assert item["policyId"] == event.get("policy_id")
        assert item["policyName"] == event.get("policy_name")


def expected_totals(events: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """CostTotals of these events, summed here from the ingested values."""
    chosen = list(events)
    inputs = sum(e.get("input_tokens", 0) for e in chosen)
    outputs = sum(e.get("output_tokens", 0) for e in chosen)
    return {
        "requests": len(chosen),
        "errors": sum(1 for e in chosen if e.get("status") == "error"),
        "inputTokens": inputs,
        "outputTokens": outputs,
        "cacheReadTokens": sum(e.get("cache_read_tokens", 0) for e in chosen),
        "cacheWriteTokens": sum(e.get("cache_write_tokens", 0) for e in chosen),
        "reasoningTokens": sum(e.get("reasoning_tokens", 0) for e in chosen),
        "totalTokens": inputs + outputs,
        "costUsd": sum(nano(e) for e in chosen) / 1e9,
    }


def on_or_after(events: Iterable[dict[str, Any]], start: str) -> list[dict[str, Any]]:
    """The events dated at or after `start` (an item's ISO timestamp)."""
    moment = parse_ts(start)
    return [e for e in events if parse_ts(e["timestamp"]) >= moment]


def live_row(**fields: Any) -> LiveRow:
    """A live row with the given fields and every other one absent (None; no tags, no
    metadata, not BYOK)."""
    return row_of_mapping(fields)


def numbered_row(
    n: int, *, model: str = "gpt-4o", status: str = "ok", ts_us: int = 0, workspace_id: int = 7
) -> LiveRow:
    """Live row number `n` of a workspace: counts and cost that differ from row to row (so
    that totals tell rows apart), committed now."""
    return live_row(
        workspace_id=workspace_id,
        id=f"e{n}",
        status=status,
        model=model,
        input_tokens=100 + n,
        output_tokens=10 + n % 7,
        cache_read_tokens=n % 3,
        cache_write_tokens=0,
        reasoning_tokens=n % 5,
        cost_nanousd=1_000 * n + 17,
        ts_us=ts_us or 1_000_000 + n,
        committed_at=time.time(),
    )
