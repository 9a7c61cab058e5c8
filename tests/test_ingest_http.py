"""POST /v1/events bodies, idempotency, concurrency, sessions and back-pressure."""

from __future__ import annotations

import asyncio
import gzip
import random
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson

from tallyql.config import Settings
from tallyql.ingest.pricing import TokenUsage
from tallyql.money import to_nano
from tallyql.storage.dialect import Dialect
from tallyql.storage.tables import SESSION_SUM_COLUMNS
from tests.conftest import Api, running_api
from tests.support.helpers import (
    all_ids,
    iso,
    llm,
    session_model_rows,
    session_rows,
    total_count,
)
from tests.support.reference_pricing import reference_cost_nano


def _auth(key: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **headers}


async def _post(api: Api, key: str, body: bytes, **headers: str) -> httpx.Response:
    return await api.client.post("/v1/events", content=body, headers=_auth(key, **headers))


# --- bodies -------------------------------------------------------------------------------


async def test_malformed_json_is_400_and_stores_nothing(api: Api) -> None:
    key = await api.key()
    for body in (
        b'[{"id": "a", "model": ',
        b'[\n  {"id": "a"},\n  {"id": "b",\n',  # pretty-printed and truncated
        b"nonsense",
        b"",
    ):
        response = await _post(api, key, body, **{"Content-Type": "application/json"})
        assert response.status_code == 400, (body, response.text)
        error = response.json()["error"]
        assert error["code"] == "BAD_REQUEST"
        assert "not valid JSON" in error["message"]
    for body in (b"42", b'"text"', b'{"events": {"id": "a"}}'):
        response = await _post(api, key, body)
        assert response.status_code == 400, (body, response.text)
    assert await total_count(api, key) == 0


async def test_ndjson_keeps_every_line_but_the_broken_one(api: Api) -> None:
    key = await api.key()
    lines = [
        orjson.dumps(llm("n0")),
        b'{"id": "n1", "model": "gpt-4o"',  # broken
        b"",  # blank lines are skipped
        orjson.dumps(llm("n2")),
        orjson.dumps(llm("n3", input_tokens=-1)),
    ]
    response = await _post(
        api, key, b"\n".join(lines) + b"\n", **{"Content-Type": "application/x-ndjson"}
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["accepted"], result["rejected"]) == (2, 2)
    # indexes count events (non-blank lines)
    assert [(e["index"], e["field"]) for e in result["errors"]] == [(1, ""), (3, "input_tokens")]
    assert "not valid JSON" in result["errors"][0]["message"]
    assert sorted(await all_ids(api, key)) == ["n0", "n2"]

    # without the content type, a body of one object per line is read as NDJSON too
    plain = b"\n".join(orjson.dumps(llm(f"p{i}")) for i in range(3))
    response = await _post(api, key, plain, **{"Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 3


async def test_gzip_bodies(api: Api) -> None:
    key = await api.key()
    body = gzip.compress(orjson.dumps([llm(f"z{i}") for i in range(5)]))
    response = await _post(
        api, key, body, **{"Content-Encoding": "gzip", "Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 5
    # gzip recognised by its magic bytes when the header is missing; NDJSON inside gzip
    ndjson = b"\n".join(orjson.dumps(llm(f"y{i}")) for i in range(3))
    response = await _post(
        api, key, gzip.compress(ndjson), **{"Content-Type": "application/x-ndjson"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 3
    broken = gzip.compress(b"[]")[:-6]
    response = await _post(api, key, broken, **{"Content-Encoding": "gzip"})
    assert response.status_code == 400
    response = await _post(api, key, b"[]", **{"Content-Encoding": "br"})
    assert response.status_code == 415
    assert sorted(await all_ids(api, key)) == sorted(
        [f"z{i}" for i in range(5)] + [f"y{i}" for i in range(3)]
    )


async def test_events_envelope_single_object_and_empty_array(api: Api) -> None:
    key = await api.key()
    response = await _post(api, key, orjson.dumps({"events": [llm("e0"), llm("e1")]}))
    assert response.json() == {"accepted": 2, "duplicates": 0, "rejected": 0, "errors": []}
    response = await _post(api, key, orjson.dumps(llm("single")))
    assert response.json()["accepted"] == 1
    for empty, media in (
        (b"[]", "application/json"),
        (b'{"events": []}', "application/json"),
        (b"\n", "application/x-ndjson"),
    ):
        response = await _post(api, key, empty, **{"Content-Type": media})
        assert response.status_code == 200, (empty, response.text)
        assert response.json() == {"accepted": 0, "duplicates": 0, "rejected": 0, "errors": []}
    assert sorted(await all_ids(api, key)) == ["e0", "e1", "single"]


async def test_oversize_body_and_batch_are_413(settings: Settings, db_kind: str) -> None:
    small = replace(settings, max_body_bytes=2_000, max_batch_events=5)
    async with running_api(small, db_kind) as api:
        key = await api.key()
        big = orjson.dumps([llm(f"b{i}", metadata={"pad": "x" * 600}) for i in range(4)])
        assert len(big) > 2_000
        response = await _post(api, key, big)
        assert response.status_code == 413, response.text
        assert response.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
        assert "exceeds the limit of 2000 bytes" in response.json()["error"]["message"]
        # small when compressed, too big once inflated
        response = await _post(api, key, gzip.compress(big), **{"Content-Encoding": "gzip"})
        assert len(gzip.compress(big)) < 2_000
        assert response.status_code == 413, response.text
        # a streamed body without Content-Length is cut off at the limit too

        async def chunks():  # type: ignore[no-untyped-def]
            for i in range(0, len(big), 500):
                yield big[i : i + 500]

        response = await api.client.post("/v1/events", content=chunks(), headers=_auth(key))
        assert response.status_code == 413, response.text
        six = orjson.dumps([{"id": f"s{i}"} for i in range(6)])
        response = await _post(api, key, six)
        assert response.status_code == 413, response.text
        assert "at most 5" in response.json()["error"]["message"]
        five = orjson.dumps([{"id": f"s{i}"} for i in range(5)])
        response = await _post(api, key, five)
        assert response.status_code == 200
        assert response.json()["accepted"] == 5
        assert sorted(await all_ids(api, key)) == [f"s{i}" for i in range(5)]


async def test_default_limit_is_ten_thousand_events(api: Api) -> None:
    key = await api.key()
    response = await _post(api, key, b"[" + b",".join([b"{}"] * 10_001) + b"]")
    assert response.status_code == 413
    assert "at most 10000" in response.json()["error"]["message"]
    assert await total_count(api, key) == 0


# --- idempotency --------------------------------------------------------------------------


async def _totals(api: Api, key: str) -> tuple[Any, ...]:
    sessions = await session_rows(api.services)
    models = await session_model_rows(api.services)
    session_sums = {c: sum(s[c] for s in sessions.values()) for c in SESSION_SUM_COLUMNS}
    model_sums = sum(m["requests"] for m in models.values())
    return await total_count(api, key), session_sums, model_sums, len(sessions), len(models)


async def test_resending_a_batch_changes_nothing(api: Api) -> None:
    key = await api.key()
    rng = random.Random(7)
    batch = [
        llm(
            f"r{i}",
            session_id=f"s{i % 3}",
            input_tokens=rng.randint(10, 1000),
            output_tokens=rng.randint(1, 100),
            latency_ms=rng.uniform(10, 900),
            status=rng.choice(["success", "error"]),
            request={"n": i},
        )
        for i in range(25)
    ]
    first = await api.ingest(key, batch)
    assert (first["accepted"], first["duplicates"]) == (25, 0)
    before = await _totals(api, key)
    assert before[0] == 25 and before[1]["requests"] == 25 and before[2] == 25
    again = await api.ingest(key, batch)
    assert again == {"accepted": 0, "duplicates": 25, "rejected": 0, "errors": []}
    # a changed event under a known id is still a duplicate: the first version stays
    changed = [dict(e, input_tokens=5) for e in batch[:3]] + [llm("r-new", session_id="s0")]
    third = await api.ingest(key, changed)
    assert (third["accepted"], third["duplicates"]) == (1, 3)
    after = await _totals(api, key)
    assert after[0] == 26
    assert after[1]["requests"] == 26
    assert after[1]["input_tokens"] == before[1]["input_tokens"] + 100
    # and through GraphQL
    mutation = (
        """mutation($e: [EventInput!]!) { ingestEvents(events: $e) { accepted duplicates } }"""
    )
    data = await api.data(key, mutation, {"e": [{"id": "r1"}, {"id": "r2"}]})
    assert data["ingestEvents"] == {"accepted": 0, "duplicates": 2}
    assert await _totals(api, key) == after


async def test_same_id_twice_in_one_batch_counts_once(api: Api) -> None:
    key = await api.key()
    result = await api.ingest(
        key,
        [
            llm("dup", input_tokens=111, session_id="s"),
            llm("other", session_id="s"),
            llm("dup", input_tokens=999, session_id="s"),
        ],
    )
    assert (result["accepted"], result["duplicates"]) == (2, 1)
    node = (await api.data(key, '{ request(id: "dup") { inputTokens } }'))["request"]
    assert node == {"inputTokens": 111}
    assert await total_count(api, key) == 2
    sessions = await session_rows(api.services)
    assert sessions["s"]["requests"] == 2
    assert sessions["s"]["input_tokens"] == 211


async def test_fifty_concurrent_calls(api: Api) -> None:
    # two keys of one workspace: one key may have TALLYQL_KEY_MAX_IN_FLIGHT (32) calls at once
    key, other = await api.key(), await api.key()
    calls = 50
    per_call = 20
    overlap = 5  # each call also re-sends the first ids of the next call

    def batch(c: int) -> list[dict[str, Any]]:
        own = [llm(f"c{c}-{i}", session_id=f"s{c % 7}") for i in range(per_call)]
        nxt = (c + 1) % calls
        return own + [llm(f"c{nxt}-{i}", session_id=f"s{nxt % 7}") for i in range(overlap)]

    keys = (key, other)
    results = await asyncio.gather(*(api.ingest(keys[c % 2], batch(c)) for c in range(calls)))
    assert sum(r["accepted"] for r in results) == calls * per_call
    assert sum(r["duplicates"] for r in results) == calls * overlap
    assert all(r["accepted"] + r["duplicates"] == per_call + overlap for r in results)
    assert await total_count(api, key) == calls * per_call
    sessions = await session_rows(api.services)
    assert sum(s["requests"] for s in sessions.values()) == calls * per_call
    assert {sid: s["requests"] for sid, s in sessions.items()} == {
        f"s{k}": per_call * sum(1 for c in range(calls) if c % 7 == k) for k in range(7)
    }
    assert api.services.writer.stats.events_committed == calls * per_call


async def test_overlapping_batches_in_parallel_lanes_count_once(api: Api) -> None:
    """Calls re-sending the same ids in opposite orders, committed by concurrent writer
    transactions on PostgreSQL: exact counts, and no transaction fails (no deadlock)."""
    key = await api.key()
    batches = api.services.writer.batches
    original = batches.write
    active = peak = 0

    async def counted(events, steps):  # type: ignore[no-untyped-def]
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        try:
            return await original(events, steps)
        finally:
            active -= 1

    batches.write = counted  # type: ignore[method-assign]
    pool = [llm(f"p{i:03d}", session_id=f"s{i % 3}") for i in range(150)]
    calls = [pool if c % 2 else pool[::-1] for c in range(16)]
    results = await asyncio.gather(*(api.ingest(key, events) for events in calls))
    assert sum(r["accepted"] for r in results) == 150
    assert sum(r["duplicates"] for r in results) == 15 * 150
    assert await total_count(api, key) == 150
    sessions = await session_rows(api.services)
    assert {sid: s["requests"] for sid, s in sessions.items()} == {f"s{k}": 50 for k in range(3)}
    assert api.services.writer.stats.failures == 0
    if api.services.db.dialect is Dialect.POSTGRESQL:
        assert 2 <= peak <= batches.lanes  # transactions did overlap
    else:
        assert peak == 1


# --- sessions -----------------------------------------------------------------------------

MODELS = [
    ("openai", "gpt-4o"),
    ("openai", "gpt-4o-mini"),
    ("anthropic", "claude-sonnet-4-5"),
    ("google", "gemini-2.5-flash"),
    ("acme", "homegrown-1"),  # unpriced
    (None, None),  # a tool call
]


async def test_sessions_table_equals_recomputation(api: Api) -> None:
    key = await api.key()
    rng = random.Random(11)
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=5)
    sent: list[dict[str, Any]] = []
    for i in range(120):
        provider, model = rng.choice(MODELS)
        sid = f"sess-{rng.randint(0, 5)}"
        event: dict[str, Any] = {
            "id": f"ev{i}",
            "timestamp": iso(base + timedelta(seconds=rng.randint(0, 4 * 3600))),
            "session_id": sid,
            "user_id": f"user-{sid}" if rng.random() < 0.8 else None,
            "agent_id": f"agent-{sid}",
            "latency_ms": round(rng.uniform(5, 3000), 3) if rng.random() < 0.9 else None,
            "status": rng.choice(["success"] * 6 + ["error", "blocked"]),
        }
        if model is None:
            event.update(kind="tool_call", tool="search", mcp_server="web")
        else:
            inp = rng.randint(0, 50_000)
            cr = rng.randint(0, inp // 2)
            out = rng.randint(0, 3000)
            event.update(
                provider=provider,
                model=model,
                input_tokens=inp,
                cache_read_tokens=cr,
                cache_write_tokens=rng.randint(0, (inp - cr) // 3),
                output_tokens=out,
                reasoning_tokens=rng.randint(0, out // 2),
            )
            if rng.random() < 0.2:
                event["cost_usd"] = round(rng.uniform(0, 0.5), 6)
        sent.append(event)
    sent.append(llm("no-session"))  # events without a session make no session row
    rng.shuffle(sent)  # timestamps arrive out of order
    for start in range(0, len(sent), 40):
        result = await api.ingest(key, sent[start : start + 40])
        assert result["rejected"] == 0, result
    await api.ingest(key, sent[:30])  # duplicates change nothing

    want: dict[str, dict[str, Any]] = defaultdict(
        lambda: {c: 0 for c in SESSION_SUM_COLUMNS} | {"first_ts": None, "last_ts": None}
    )
    want_models: dict[tuple[str, str, str], dict[str, Any]] = defaultdict(lambda: defaultdict(int))
    for e in sent:
        sid = e.get("session_id")
        if sid is None:
            continue
        ts = datetime.fromisoformat(e["timestamp"])
        usage = TokenUsage(
            e.get("input_tokens", 0),
            e.get("output_tokens", 0),
            e.get("cache_read_tokens", 0),
            e.get("cache_write_tokens", 0),
            e.get("reasoning_tokens", 0),
        )
        if "cost_usd" in e:
            cost = to_nano(e["cost_usd"])
        elif e.get("model") is None or e["model"] == "homegrown-1":
            cost = 0
        else:
            cost = reference_cost_nano(e["provider"], e["model"], usage, ts)
        s = want[sid]
        m = want_models[(sid, e.get("provider") or "", e.get("model") or "")]
        for target in (s, m):
            target["requests"] += 1
            target["errors"] += e["status"] == "error"
            target["input_tokens"] += usage.input_tokens
            target["output_tokens"] += usage.output_tokens
            target["cache_read_tokens"] += usage.cache_read_tokens
            target["cache_write_tokens"] += usage.cache_write_tokens
            target["reasoning_tokens"] += usage.reasoning_tokens
            target["cost_nanousd"] += cost
            target["latency_ms_sum"] += e["latency_ms"] or 0.0
        m["latency_count"] += e["latency_ms"] is not None
        s["first_ts"] = ts if s["first_ts"] is None else min(s["first_ts"], ts)
        s["last_ts"] = ts if s["last_ts"] is None else max(s["last_ts"], ts)
        if e["user_id"]:
            s["user_id"] = e["user_id"]
        s["agent_id"] = e["agent_id"]

    got = await session_rows(api.services)
    assert set(got) == set(want)
    for sid, w in want.items():
        g = got[sid]
        for column in SESSION_SUM_COLUMNS:
            if column == "latency_ms_sum":
                assert abs(g[column] - w[column]) < 1e-6, (sid, column)
            else:
                assert g[column] == w[column], (sid, column, g[column], w[column])
        assert g["first_ts"] == w["first_ts"], sid
        assert g["last_ts"] == w["last_ts"], sid
        assert g["user_id"] == w.get("user_id"), sid
        assert g["agent_id"] == w["agent_id"], sid
    got_models = await session_model_rows(api.services)
    assert set(got_models) == set(want_models)
    for mkey, w in want_models.items():
        g = got_models[mkey]
        for column, value in w.items():
            if column == "latency_ms_sum":
                assert abs(g[column] - value) < 1e-6, (mkey, column)
            else:
                assert g[column] == value, (mkey, column, g[column], value)


# --- back-pressure and atomicity ----------------------------------------------------------


async def test_full_writer_queue_answers_503_and_stores_nothing(
    settings: Settings, db_kind: str, monkeypatch: Any
) -> None:
    one_lane = replace(settings, writer_queue_events=10, writer_connections=1)
    async with running_api(one_lane, db_kind) as api:
        key = await api.key()
        writer = api.services.writer
        batches = writer._batches
        original = batches.write
        entered = asyncio.Event()
        gate = asyncio.Event()

        async def slow_write(events, steps):  # type: ignore[no-untyped-def]
            entered.set()
            await gate.wait()
            return await original(events, steps)

        monkeypatch.setattr(batches, "write", slow_write)
        first = asyncio.create_task(api.ingest(key, [llm(f"a{i}") for i in range(6)]))
        await asyncio.wait_for(entered.wait(), 5)  # the writer holds the first call
        second = asyncio.create_task(api.ingest(key, [llm(f"b{i}") for i in range(8)]))
        for _ in range(500):
            if writer.queue_depth == 8:
                break
            await asyncio.sleep(0.01)
        assert writer.queue_depth == 8

        refused = await _post(api, key, orjson.dumps([llm(f"c{i}") for i in range(5)]))
        assert refused.status_code == 503
        assert refused.headers["Retry-After"] == "1"
        assert refused.json()["error"]["code"] == "BUSY"
        mutation = """mutation($e: [EventInput!]!) {
          ingestEvents(events: $e) { accepted rejected userErrors { code } } }"""
        data = await api.data(key, mutation, {"e": [{"id": f"g{i}"} for i in range(5)]})
        assert data["ingestEvents"] == {
            "accepted": 0,
            "rejected": 5,
            "userErrors": [{"code": "BUSY"}],
        }

        gate.set()
        assert (await first)["accepted"] == 6
        assert (await second)["accepted"] == 8
        ids = await all_ids(api, key)
        assert sorted(ids) == sorted([f"a{i}" for i in range(6)] + [f"b{i}" for i in range(8)])
        retry = await api.ingest(key, [llm(f"c{i}") for i in range(5)])
        assert retry["accepted"] == 5


async def test_a_failing_transaction_stores_nothing(api: Api, monkeypatch: Any) -> None:
    key = await api.key()
    await api.ingest(key, [llm("before", session_id="s")])
    before = await _totals(api, key)
    writer = api.services.writer
    # a statement that fails after the events and sessions were written in the transaction
    failing = [*writer._statements, "SELECT no_such_column FROM events"]
    monkeypatch.setattr(writer, "_statements", failing)
    response = await _post(api, key, orjson.dumps([llm(f"x{i}", session_id="s") for i in range(4)]))
    assert response.status_code == 500, response.text
    assert response.json()["error"]["code"] == "WRITE_FAILED"
    assert "nothing was stored" in response.json()["error"]["message"]
    monkeypatch.setattr(writer, "_statements", failing[:-1])
    assert await _totals(api, key) == before  # neither events nor sessions were touched
    assert writer.alive
    assert (await api.ingest(key, [llm("x0", session_id="s")]))["accepted"] == 1
    assert (await session_rows(api.services))["s"]["requests"] == 2
