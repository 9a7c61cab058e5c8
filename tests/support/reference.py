"""A plain-Python recomputation of tallyql's metrics from the events a test sent.

Written independently of tallyql/engine: buckets come from stepping local wall-clock time
with zoneinfo, filters and dimensions are evaluated on the event dicts, percentiles are exact,
by NumPy's linear interpolation between the closest ranks (the engine's are within 1% when
planned, exact on the raw path).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

Event = dict[str, Any]

PERCENTILES = {"P50_LATENCY_MS": 0.5, "P95_LATENCY_MS": 0.95, "P99_LATENCY_MS": 0.99}
DISTINCT = {
    "UNIQUE_USERS": "user_id",
    "UNIQUE_CALLERS": "caller",
    "UNIQUE_SESSIONS": "session_id",
    "UNIQUE_MODELS": "model",
    "UNIQUE_AGENTS": "agent_id",
    "UNIQUE_AGENT_INSTANCES": "agent_instance_id",
    "UNIQUE_TOOLS": "tool",
    "UNIQUE_MCP_SERVERS": "mcp_server",
    "UNIQUE_GATEWAYS": "gateway",
}
COLUMN_DIMENSIONS = {
    "PROVIDER": "provider",
    "MODEL": "model",
    "KIND": "kind",
    "STATUS": "status",
    "STATUS_CODE": "status_code",
    "ERROR_TYPE": "error_type",
    "USER": "user_id",
    "DEPARTMENT": "department",
    "AGENT": "agent_id",
    "AGENT_INSTANCE": "agent_instance_id",
    "NODE": "node",
    "TOOL": "tool",
    "MCP_SERVER": "mcp_server",
    "GATEWAY": "gateway",
    "PROTOCOL": "protocol",
    "API_KEY": "api_key_id",
    "CALLER": "caller",
    "REQUEST_TYPE": "request_type",
    "BILLING_MODE": "billing_mode",
    "POLICY": "policy_id",
    "POLICY_NAME": "policy_name",
    "COST_SOURCE": "cost_source",
    "SESSION": "session_id",
}
CODE_ERROR_TYPES = {
    429: "rate_limit",
    401: "auth_error",
    403: "auth_error",
    408: "timeout",
    504: "timeout",
    **dict.fromkeys((400, 404, 409, 413, 422), "invalid_request"),
}
"""The issue's table of HTTP codes that name an error type (any other code: other)."""
FILTER_FIELDS = {
    "providers": "provider",
    "models": "model",
    "kinds": "kind",
    "statuses": "status",
    "users": "user_id",
    "departments": "department",
    "agents": "agent_id",
    "tools": "tool",
    "gateways": "gateway",
    "mcpServers": "mcp_server",
    "protocols": "protocol",
    "requestTypes": "request_type",
    "billingModes": "billing_mode",
    "policies": "policy_id",
}


def normalise(event: Event, departments: dict[str, str] | None = None) -> Event:
    """The stored view of a test event (the defaults the contract documents). Test events
    use model names genai-prices does not know, so without cost_usd they cost nothing."""
    out = dict(event)
    out["department"] = (departments or {}).get(out.get("user_id") or "")
    out.setdefault("kind", "llm_call")
    code = out.get("status_code")
    if "status" not in out:
        failed = out.get("error_type") or (code is not None and 400 <= code < 600)
        out["status"] = "error" if failed else "success"
    if out["status"] == "error" and not out.get("error_type"):
        out["error_type"] = CODE_ERROR_TYPES.get(code, "other")
    if out["status"] == "blocked" and not out.get("error_type"):
        out["error_type"] = "policy_blocked"
    out["caller"] = out.get("api_key_id") or (
        f"ip:{out['caller_ip']}" if out.get("caller_ip") else None
    )
    if "cost_usd" in out:
        out["cost_source"] = "provided"
    elif out.get("model"):  # test models are unknown to genai-prices
        out["cost_source"] = "unpriced"
    else:
        has_tokens = out.get("input_tokens") or out.get("output_tokens")
        out["cost_source"] = "unpriced" if has_tokens else "computed"
    out["ts"] = datetime.fromisoformat(out["timestamp"]).astimezone(UTC)
    for name in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"):
        out.setdefault(name, 0)
    out.setdefault("reasoning_tokens", 0)
    out.setdefault("is_byok", False)
    out.setdefault("tags", [])
    out.setdefault("metadata", {})
    return out


def exact_quantile(values: list[float], q: float) -> float | None:
    """The documented definition, by NumPy (independent of tallyql's own arithmetic)."""
    return float(np.quantile(values, q, method="linear")) if values else None


def metric_value(name: str, events: list[Event]) -> float | None:
    n = len(events)
    latencies = [e["latency_ms"] for e in events if e.get("latency_ms") is not None]
    ttfts = [e["ttft_ms"] for e in events if e.get("ttft_ms") is not None]
    errors = sum(e["status"] == "error" for e in events)
    blocked = sum(e["status"] == "blocked" for e in events)
    simple: dict[str, Callable[[], float | None]] = {
        "REQUESTS": lambda: n,
        "ERRORS": lambda: errors,
        "BLOCKED": lambda: blocked,
        "SUCCESS_RATE": lambda: (n - errors - blocked) / n if n else None,
        "ERROR_RATE": lambda: errors / n if n else None,
        "INPUT_TOKENS": lambda: sum(e["input_tokens"] for e in events),
        "OUTPUT_TOKENS": lambda: sum(e["output_tokens"] for e in events),
        "CACHE_READ_TOKENS": lambda: sum(e["cache_read_tokens"] for e in events),
        "CACHE_WRITE_TOKENS": lambda: sum(e["cache_write_tokens"] for e in events),
        "REASONING_TOKENS": lambda: sum(e["reasoning_tokens"] for e in events),
        "TOTAL_TOKENS": lambda: sum(e["input_tokens"] + e["output_tokens"] for e in events),
        "COST_USD": lambda: sum(round(e.get("cost_usd", 0) * 1e9) for e in events) / 1e9,
        "AVG_LATENCY_MS": lambda: sum(latencies) / len(latencies) if latencies else None,
        "MAX_LATENCY_MS": lambda: max(latencies) if latencies else None,
        "AVG_TTFT_MS": lambda: sum(ttfts) / len(ttfts) if ttfts else None,
        "P95_TTFT_MS": lambda: exact_quantile(ttfts, 0.95),
        "REQUEST_BYTES": lambda: sum(e.get("request_bytes") or 0 for e in events),
        "RESPONSE_BYTES": lambda: sum(e.get("response_bytes") or 0 for e in events),
    }
    if name in simple:
        return simple[name]()
    if name in PERCENTILES:
        return exact_quantile(latencies, PERCENTILES[name])
    if name in DISTINCT:
        return len({e.get(DISTINCT[name]) for e in events} - {None})
    raise KeyError(name)


def matches(event: Event, spec: dict[str, Any], members: dict[str, set[str]]) -> bool:
    for name, column in FILTER_FIELDS.items():
        wanted = spec.get(name)
        if wanted and event.get(column) not in wanted:
            return False
    if spec.get("groups"):
        users = set().union(*(members.get(g, set()) for g in spec["groups"]))
        if event.get("user_id") not in users:
            return False
    if spec.get("statusCodes") and event.get("status_code") not in spec["statusCodes"]:
        return False
    if spec.get("tags") and not set(spec["tags"]) & set(event["tags"]):
        return False
    for pair in spec.get("metadata") or ():
        if _text(event["metadata"].get(pair["key"])) != pair["value"]:
            return False
    return not (spec.get("isByok") is not None and event["is_byok"] != spec["isByok"])


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def dimension_values(
    dimension: str, event: Event, tz: ZoneInfo, members: dict[str, set[str]], key: str | None
) -> list[str | None]:
    """The group keys an event falls under (several for tags and groups)."""
    if dimension in COLUMN_DIMENSIONS:
        return [_text(event.get(COLUMN_DIMENSIONS[dimension]))]
    if dimension == "BYOK":
        return [_text(event["is_byok"])]
    if dimension == "STATUS_CLASS":
        code = event.get("status_code")
        return [f"{code // 100}xx" if code is not None and 100 <= code <= 599 else None]
    if dimension == "TAG":
        return list(event["tags"]) or [None]
    if dimension == "GROUP":
        groups = [g for g, users in members.items() if event.get("user_id") in users]
        return groups or [None]
    local = event["ts"].astimezone(tz)
    if dimension == "HOUR_OF_DAY":
        return [str(local.hour)]
    if dimension == "DAY_OF_WEEK":
        return [str(local.weekday())]
    if dimension == "METADATA":
        return [_text(event["metadata"].get(key or ""))]
    raise KeyError(dimension)


def bucket_starts(start: datetime, end: datetime, granularity: str, tz: ZoneInfo) -> list[datetime]:
    """Local-time bucket starts (UTC) covering [start, end), by stepping wall clock time."""
    local = start.astimezone(tz)
    if granularity == "HOUR":
        first = local.replace(minute=0, second=0, microsecond=0)
        out, t = [], first.astimezone(UTC)
        while t < end:
            out.append(t)
            t += timedelta(hours=1)
        return out
    day = local.replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
    if granularity == "WEEK":
        day -= timedelta(days=day.weekday())
    step = timedelta(days=7 if granularity == "WEEK" else 1)
    out = []
    while True:
        instant = day.replace(tzinfo=tz).astimezone(UTC)
        if instant >= end:
            return out
        out.append(instant)
        day += step


def aggregate(
    events: Iterable[Event],
    metrics: list[str],
    dimensions: list[tuple[str, str | None]],
    start: datetime,
    end: datetime,
    tz: ZoneInfo,
    granularity: str | None,
    spec: dict[str, Any],
    members: dict[str, set[str]],
) -> dict[tuple[Any, ...], dict[str, float | None]]:
    """{(bucket iso or None, *keys): {metric: value}} for the events in [start, end)."""
    starts = bucket_starts(start, end, granularity, tz) if granularity else []
    groups: dict[tuple[Any, ...], list[Event]] = defaultdict(list)
    for event in events:
        if not start <= event["ts"] < end or not matches(event, spec, members):
            continue
        bucket = None
        if granularity:
            bucket = max(s for s in starts if s <= event["ts"]).isoformat()
        combos: list[tuple[Any, ...]] = [(bucket,)]
        for dimension, key in dimensions:
            values = dimension_values(dimension, event, tz, members, key)
            combos = [(*c, v) for c in combos for v in values]
        for combo in combos:
            groups[combo].append(event)
    return {k: {m: metric_value(m, evs) for m in metrics} for k, evs in groups.items()}


def close(expected: float | None, actual: float | None, metric: str, exact: bool = False) -> bool:
    """`exact`: percentiles too must match to float precision (the raw path's)."""
    if expected is None or actual is None:
        return expected == actual
    if not exact and (metric in PERCENTILES or metric == "P95_TTFT_MS"):
        # the sketch's guarantee: 1% relative; values at or below 1e-6 ms read as 0
        return abs(actual - expected) <= 0.01 * abs(expected) + 1e-6
    return math.isclose(expected, actual, rel_tol=1e-9, abs_tol=1e-9)
