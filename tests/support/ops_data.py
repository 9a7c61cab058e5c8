"""Deterministic mixed traffic for the operations views (sessions, tools, agents, gateways,
security), and plain-Python helpers that recompute what the API should answer."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

DAY = datetime(2026, 11, 20, tzinfo=UTC)
RANGE = {"start": "2026-11-20T00:00:00Z", "end": "2026-11-21T00:00:00Z"}
MODELS = (("openai", "gpt-4o"), ("openai", "gpt-4o-mini"), ("anthropic", "claude-sonnet-4-5"))
TOOLS = (("search", "web"), ("fetch", "web"), ("query", "db"), ("write", "db"), ("shell", None))
POLICIES = (("pol-1", "No shell", "Shell is off"), ("pol-2", "PII guard", "Blocks PII"))
USERS = ("u0", "u1", "u2", "u3", "u4", "u5")
AGENTS = {"a0": ("plan", "act"), "a1": (), "a2": ("fetch", "rank", "write")}


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def ts_of(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["timestamp"])


def traffic(seed: int = 7, sessions: int = 24, loose: int = 40) -> list[dict[str, Any]]:
    """Events of `sessions` sessions (one user and agent each) plus `loose` events outside
    any session, all on 2026-11-20 UTC."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for s in range(sessions):
        user = rng.choice((*USERS, None))
        agent = rng.choice((None, None, *AGENTS))
        instance = f"{agent}-i{rng.randrange(2)}" if agent else None
        t = DAY + timedelta(minutes=rng.randrange(0, 23 * 60), seconds=rng.randrange(60))
        for k in range(rng.randrange(1, 9)):
            out.append(_event(rng, f"s{s}-{k}", t, user, agent, instance, f"s{s}"))
            t += timedelta(seconds=rng.randrange(1, 900), milliseconds=rng.randrange(1000))
    for i in range(loose):
        t = DAY + timedelta(seconds=rng.randrange(0, 86_000))
        agent = rng.choice((None, *AGENTS))
        instance = f"{agent}-i{rng.randrange(2)}" if agent else None
        out.append(_event(rng, f"x{i}", t, rng.choice((*USERS, None)), agent, instance, None))
    return out


def _event(
    rng: random.Random,
    event_id: str,
    t: datetime,
    user: str | None,
    agent: str | None,
    instance: str | None,
    session: str | None,
) -> dict[str, Any]:
    kind = rng.choice(("llm_call", "llm_call", "tool_call", "tool_call", "agent_run"))
    ev: dict[str, Any] = {"id": event_id, "timestamp": iso(t), "kind": kind}
    for name, value in (
        ("user_id", user),
        ("agent_id", agent),
        ("session_id", session),
        ("agent_instance_id", instance),
    ):
        if value is not None:
            ev[name] = value
    if agent and AGENTS[agent] and kind != "agent_run":
        ev["node"] = rng.choice(AGENTS[agent])
    if rng.random() < 0.8:
        ev["gateway"] = rng.choice(("g0", "g1", "g2"))
    if rng.random() < 0.7:
        ev["api_key_id"] = rng.choice(("k0", "k1", "k2", "k3"))
    else:
        ev["caller_ip"] = rng.choice(("10.0.0.1", "10.0.0.2"))
    ev["latency_ms"] = round(rng.uniform(5, 3000), 1)
    ev["request_bytes"] = rng.randrange(100, 5000)
    ev["response_bytes"] = rng.randrange(100, 9000)
    ev["cost_usd"] = round(rng.uniform(0, 0.02), 6)
    if kind == "llm_call":
        provider, model = rng.choice(MODELS)
        inp = rng.randrange(10, 5000)
        out = rng.randrange(1, 800)
        ev |= {
            "provider": provider,
            "model": model,
            "input_tokens": inp,
            "output_tokens": out,
            "cache_read_tokens": rng.randrange(0, inp // 2),
            "cache_write_tokens": rng.randrange(0, inp // 4),
            "reasoning_tokens": rng.randrange(0, out),
        }
        if rng.random() < 0.1:
            ev["status"], ev["error_type"] = "error", "rate_limit"
    elif kind == "tool_call":
        tool, server = rng.choice(TOOLS)
        ev["tool"] = tool
        if server:
            ev["mcp_server"] = server
        x = rng.random()
        if x < 0.25:
            policy = rng.choice(POLICIES)
            ev |= {
                "status": "blocked",
                "policy_id": policy[0],
                "policy_name": policy[1],
                "policy_description": policy[2],
            }
        elif x < 0.35:
            ev["status"], ev["error_type"] = "error", "timeout"
    elif rng.random() < 0.2:
        ev["status"], ev["error_type"] = "error", "other"
    return ev


def nano(event: dict[str, Any]) -> int:
    return round(event.get("cost_usd", 0.0) * 1_000_000) * 1000


def quantile(values: Iterable[float], q: float) -> float | None:
    """Linear interpolation between the closest ranks, by NumPy (the documented definition)."""
    listed = list(values)
    return float(np.quantile(listed, q, method="linear")) if listed else None


def in_window(event: dict[str, Any], start: datetime, end: datetime) -> bool:
    return start <= ts_of(event) < end


def group(
    events: Iterable[dict[str, Any]], key: Callable[[dict[str, Any]], Any]
) -> dict[Any, list[dict[str, Any]]]:
    out: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        out[key(e)].append(e)
    return out


def status(event: dict[str, Any]) -> str:
    return event.get("status", "success")


def tokens(event: dict[str, Any]) -> int:
    return event.get("input_tokens", 0) + event.get("output_tokens", 0)
