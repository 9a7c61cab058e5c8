"""The demo traffic generator: deterministic, valid, realistic enough to demo and benchmark."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from genai_prices import Usage, calc_price

from tallyql.demo.catalog import build_world
from tallyql.demo.generator import generate_batches, generate_events
from tallyql.ingest.validate import validate_event
from tallyql.storage.ingest.record import ValidEvent
from tallyql.storage.types import parse_timestamp

END = datetime(2025, 11, 17, tzinfo=UTC)  # a Monday, midnight: 28 days = 4 whole weeks
DAYS = 28
Event = dict[str, Any]


@pytest.fixture(scope="module")
def sample() -> list[Event]:
    return list(generate_events(20_000, DAYS, seed=7, end=END))


def _ts(event: Event) -> datetime:
    return parse_timestamp(event["timestamp"])


def _of(sample: list[Event], kind: str) -> list[Event]:
    return [e for e in sample if e["kind"] == kind]


def test_world_shape() -> None:
    world = build_world(42)
    assert len(world.users) == 50
    assert len({u.id for u in world.users}) == 50
    assert all(u.id.startswith("user-") and "@" in u.email for u in world.users)
    assert len(world.groups) >= 5
    membership = Counter(uid for ids in world.groups.values() for uid in ids)
    assert set(membership) == {u.id for u in world.users}
    assert set(membership.values()) <= {1, 2}
    assert len(world.agents) >= 8
    assert all(len(a.instances) >= 3 for a in world.agents)
    assert len(world.tools) >= 20 and len(world.mcp_servers) >= 5
    assert len(world.gateways) == 3 and 15 <= len(world.api_keys) <= 25
    assert build_world(42) == build_world(42)


def test_deterministic_per_seed() -> None:
    first = list(generate_events(3_000, 7, seed=1, end=END))
    again = list(generate_events(3_000, 7, seed=1, end=END))
    other = list(generate_events(3_000, 7, seed=2, end=END))
    assert orjson.dumps(first) == orjson.dumps(again)
    assert all(e["id"].startswith("demo-1-") for e in first)

    def shape(es: list[Event]) -> list[tuple[Any, ...]]:
        return [(e["timestamp"], e["kind"], e.get("model"), e.get("user_id")) for e in es]

    assert shape(first) != shape(other)


ODD_END = datetime(2025, 6, 1, 3, 17, 42, 123456, tzinfo=UTC)


@pytest.mark.parametrize(
    ("count", "days", "end"),
    [(0, 1, END), (1, 1, END), (17, 3, END), (5_000, 2, END), (4_000, 90, END),
     (20_000, 1, ODD_END)],
)  # fmt: skip
def test_count_window_order_and_ids(count: int, days: int, end: datetime) -> None:
    events = list(generate_events(count, days, seed=3, end=end))
    assert len(events) == count
    stamps = [_ts(e) for e in events]
    assert stamps == sorted(stamps)
    assert all(end - timedelta(days=days) <= ts < end for ts in stamps)
    assert len({e["id"] for e in events}) == count
    orjson.dumps(events)  # JSON-serialisable


def test_default_end_is_now() -> None:
    before = datetime.now(UTC).replace(second=0, microsecond=0)
    events = list(generate_events(500, 1))
    assert len(events) == 500
    assert all(before - timedelta(days=1, minutes=1) <= _ts(e) < before + timedelta(minutes=1)
               for e in events)  # fmt: skip


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        generate_events(-1, 1)
    with pytest.raises(ValueError):
        generate_events(10, 0)
    with pytest.raises(ValueError):
        next(generate_batches(10, 1, batch_size=0))


def test_batches_match_events() -> None:
    batches = list(generate_batches(2_345, 2, seed=5, end=END, batch_size=1_000))
    assert [len(b) for b in batches] == [1_000, 1_000, 345]
    flat = [e for b in batches for e in b]
    assert flat == list(generate_events(2_345, 2, seed=5, end=END))


def test_every_event_is_valid(sample: list[Event]) -> None:
    for i, event in enumerate(sample):
        result = validate_event(event, i, END)
        assert isinstance(result, ValidEvent), (event, result)
        assert result.token_accounting == "inclusive"


def test_kinds_mix(sample: list[Event]) -> None:
    kinds = Counter(e["kind"] for e in sample)
    assert kinds["llm_call"] > 0.6 * len(sample)
    assert kinds["tool_call"] > 0.1 * len(sample)
    assert 0.01 * len(sample) < kinds["agent_run"] < 0.1 * len(sample)
    assert 0 < kinds["http_request"] < 0.03 * len(sample)
    for tool_call in _of(sample, "tool_call"):
        assert tool_call["tool"] and tool_call["mcp_server"] and tool_call["protocol"] == "mcp"
        assert "model" not in tool_call and "input_tokens" not in tool_call


def test_providers_and_priced_models(sample: list[Event]) -> None:
    llm = _of(sample, "llm_call")
    pairs = Counter((e["provider"], e["model"]) for e in llm)
    priced: set[tuple[str, str]] = set()
    for provider, model in pairs:
        try:
            calc_price(Usage(input_tokens=1000, output_tokens=100), model, provider_id=provider)
        except LookupError:
            continue
        priced.add((provider, model))
    assert len({p for p, _ in priced}) >= 5
    assert len(priced) >= 15
    unpriced = {pm: n for pm, n in pairs.items() if pm not in priced}
    assert set(unpriced) == {("self-hosted", "llama-3.1-70b-internal")}
    assert 0 < sum(unpriced.values()) / len(llm) < 0.015  # ~0.5%, a few sessions
    top = pairs.most_common(3)  # cheap models dominate
    assert {m for (_, m), _ in top} & {"gpt-4o-mini", "gpt-4.1-mini", "codestral-latest"}
    provided = [e for e in llm if "cost_usd" in e]
    assert 0.003 < len(provided) / len(llm) < 0.03
    assert all(e["gateway"] == "openrouter" and e["cost_usd"] > 0 for e in provided)


def test_llm_errors(sample: list[Event]) -> None:
    llm = _of(sample, "llm_call")
    errors = [e for e in llm if e["status"] == "error"]
    assert 0.01 <= len(errors) / len(llm) <= 0.03
    types = Counter(e["error_type"] for e in errors)
    assert set(types) == {"rate_limit", "invalid_request", "timeout", "auth_error",
                          "model_error", "other"}  # fmt: skip
    assert types.most_common(1)[0][0] == "rate_limit"
    assert all(e["status_code"] >= 400 and e["error_message"] for e in errors)
    assert all(e.get("status_code") == 200 for e in llm if e["status"] == "success")
    ok_out = statistics.mean(e["output_tokens"] for e in llm if e["status"] == "success")
    assert statistics.mean(e["output_tokens"] for e in errors) < ok_out / 2


def test_blocked_tool_calls(sample: list[Event]) -> None:
    tools = _of(sample, "tool_call")
    blocked = [e for e in tools if e["status"] == "blocked"]
    assert 0.015 < len(blocked) / len(tools) < 0.05
    policies = Counter(e["policy_id"] for e in blocked)
    assert len(policies) >= 3
    world = build_world(7)
    by_id = {p.id: p for p in world.policies}
    for e in blocked:
        assert e["error_type"] == "policy_blocked"
        assert e["policy_name"] == by_id[e["policy_id"]].name
        assert e["policy_description"] == by_id[e["policy_id"]].description
    assert not any("policy_id" in e for e in tools if e["status"] != "blocked")


def test_sessions(sample: list[Event]) -> None:
    sessions: dict[str, list[Event]] = defaultdict(list)
    for e in sample:
        if e.get("session_id"):
            sessions[e["session_id"]].append(e)
    sizes = [len(v) for v in sessions.values()]
    assert statistics.median(sizes) >= 3
    assert sum(1 for n in sizes if n >= 5) > 100
    spans = []
    for events in sessions.values():
        assert len({e.get("user_id") for e in events}) == 1
        assert len({e.get("agent_id") for e in events}) == 1
        spans.append((_ts(events[-1]) - _ts(events[0])).total_seconds())
    assert statistics.median(spans) < 15 * 60  # minutes, not hours


def test_agent_runs_link_their_calls(sample: list[Event]) -> None:
    by_id = {e["id"]: e for e in sample}
    runs = _of(sample, "agent_run")
    children: dict[str, list[Event]] = defaultdict(list)
    for e in sample:
        if e["kind"] != "agent_run" and e.get("run_id"):
            children[e["run_id"]].append(e)
    linked = [r for r in runs if children[r["run_id"]]]
    assert len(linked) > 0.95 * len(runs)
    for run in linked:
        assert "input_tokens" not in run and run["latency_ms"] > 0
        for child in children[run["run_id"]]:
            assert child["trace_id"] == run["trace_id"]
            assert child["agent_instance_id"] == run["agent_instance_id"]
            parent = by_id.get(child["parent_id"])
            if parent is not None:  # the parent may precede the sample's window
                assert parent["run_id"] == run["run_id"]
    nodes = Counter(e["node"] for e in sample if e.get("node"))
    assert {"retrieve", "plan", "generate", "review"} <= set(nodes)
    assert len({e["agent_id"] for e in runs}) >= 8
    assert len({e["agent_instance_id"] for e in runs}) >= 24


def test_weekly_and_daily_rhythm(sample: list[Event]) -> None:
    per_weekday = Counter(_ts(e).weekday() for e in sample)
    weekday = statistics.mean(per_weekday[d] for d in range(5))
    weekend = statistics.mean(per_weekday[d] for d in (5, 6))
    assert 0.25 < weekend / weekday < 0.6
    per_hour = Counter(_ts(e).hour for e in sample)
    assert min(per_hour[h] for h in (9, 10, 14, 15)) > 3 * max(per_hour[h] for h in (1, 2, 3))


def test_tokens_are_consistent(sample: list[Event]) -> None:
    llm = [e for e in _of(sample, "llm_call") if e["status"] == "success"]
    cached = [e for e in llm if e.get("cache_read_tokens")]
    written = [e for e in llm if e.get("cache_write_tokens")]
    reasoning = [e for e in llm if e.get("reasoning_tokens")]
    assert len(cached) > 0.1 * len(llm) and written and len(reasoning) > 0.02 * len(llm)
    assert {e["provider"] for e in cached} >= {"openai", "anthropic"}
    for e in llm:
        cache = e.get("cache_read_tokens", 0) + e.get("cache_write_tokens", 0)
        assert cache <= e["input_tokens"]
        assert e.get("reasoning_tokens", 0) <= e["output_tokens"]
        assert e["latency_ms"] > 0 and e["request_bytes"] > 0 and e["response_bytes"] > 0
        if "ttft_ms" in e:
            assert 0 < e["ttft_ms"] <= e["latency_ms"]
        if e["request_type"] == "embedding":
            assert e["output_tokens"] == 0 and e["input_tokens"] > 0
        else:
            assert e["output_tokens"] > 0
    reasoners = {e["model"] for e in reasoning}
    assert reasoners <= {"o3-mini", "o4-mini", "gemini-2.5-pro", "deepseek-reasoner", "grok-3-mini",
                         "grok-4", "claude-sonnet-4-5", "claude-opus-4-1"}  # fmt: skip
    assert any(e["request_type"] == "chat" and "ttft_ms" in e for e in llm)
    by_model: dict[str, list[int]] = defaultdict(list)
    for e in llm:
        by_model[e["model"]].append(e["output_tokens"])
    assert statistics.median(by_model["codestral-latest"]) < statistics.median(by_model["gpt-4o"])


def test_attribution_and_extras(sample: list[Event]) -> None:
    assert 40 <= len({e["user_id"] for e in sample if e.get("user_id")}) <= 50
    assert len({e["api_key_id"] for e in sample if e.get("api_key_id")}) >= 15
    assert len({e["caller_ip"] for e in sample if e.get("caller_ip")}) >= 30
    assert {e["gateway"] for e in sample if e.get("gateway")} == {
        "gw-eu-west", "gw-us-east", "openrouter"}  # fmt: skip
    assert {"openai", "anthropic", "mcp"} <= {e.get("protocol") for e in sample}
    assert {"chat", "embedding", "completion", "tool"} <= {e.get("request_type") for e in sample}
    llm = _of(sample, "llm_call")
    byok = [e for e in llm if e["is_byok"]]
    assert byok and all(e["billing_mode"] == "byok" for e in byok)
    assert all(e["billing_mode"] == "platform" for e in llm if not e["is_byok"])
    tags = Counter(t for e in sample for t in e.get("tags", ()))
    assert {"prod", "staging", "experiment-a"} <= set(tags)
    assert all(e["metadata"]["env"] in {"prod", "staging", "dev"} for e in sample)
    payloads = [e for e in llm if "request" in e]
    assert 0.003 < len(payloads) / len(llm) < 0.02
    assert all(e["response"] and e["request"]["messages"] for e in payloads)
