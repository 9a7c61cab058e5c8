"""POST /v1/metrics and `agentMetrics`: Claude Code's delta counters, cumulative counters
(turned into deltas, resets included), gauges and histograms; duplicates, rejected and skipped
points; workspace isolation and roles."""

from __future__ import annotations

import time
from typing import Any

import orjson

from tallyql.auth.principal import Role
from tests.conftest import Api

BASE_NS = (time.time_ns() // 1_000_000_000 - 3600) * 1_000_000_000
MIN = 60_000_000_000


def _attr(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": value}}


def _point(start: int, at: int, value: float | int, **attrs: Any) -> dict[str, Any]:
    number = {"asInt": str(value)} if isinstance(value, int) else {"asDouble": value}
    return {
        "startTimeUnixNano": str(start),
        "timeUnixNano": str(at),
        "attributes": [_attr(k.replace("_", "."), v) for k, v in attrs.items()],
        **number,
    }


def _sum(
    name: str, unit: str, points: list[dict[str, Any]], temporality: int = 1
) -> dict[str, Any]:
    return {
        "name": name,
        "unit": unit,
        "sum": {"aggregationTemporality": temporality, "isMonotonic": True, "dataPoints": points},
    }


def _body(service: str, metrics: list[dict[str, Any]]) -> bytes:
    return orjson.dumps(
        {
            "resourceMetrics": [
                {
                    "resource": {"attributes": [_attr("service.name", service)]},
                    "scopeMetrics": [
                        {"scope": {"name": "com.anthropic.claude_code"}, "metrics": metrics}
                    ],
                }
            ]
        }
    )


async def _post(api: Api, key: str, body: bytes) -> Any:
    return await api.client.post(
        "/v1/metrics",
        content=body,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )


QUERY = """query($names: [String!], $groupBy: [String!]) {
  agentMetrics(names: $names, groupBy: $groupBy) {
    name kind unit group total count last minimum maximum series points firstAt lastAt
  }
}"""


async def test_metrics_store_and_read(api: Api) -> None:
    key = await api.key(role=Role.INGEST)
    s1 = {"session_id": "cc-1", "user_email": "ada@example.com"}
    # Claude Code: delta temporality (its default); cost by model, tokens by type
    claude = _body(
        "claude-code",
        [
            _sum(
                "claude_code.cost.usage",
                "USD",
                [
                    _point(BASE_NS, BASE_NS + MIN, 0.25, model="claude-sonnet-4-5", **s1),
                    _point(BASE_NS + MIN, BASE_NS + 2 * MIN, 0.5, model="claude-sonnet-4-5", **s1),
                    _point(BASE_NS, BASE_NS + MIN, 0.125, model="claude-haiku-4-5", **s1),
                ],
            ),
            _sum(
                "claude_code.token.usage",
                "tokens",
                [
                    _point(
                        BASE_NS, BASE_NS + MIN, 1000, type="input", model="claude-sonnet-4-5", **s1
                    ),
                    _point(
                        BASE_NS, BASE_NS + MIN, 300, type="output", model="claude-sonnet-4-5", **s1
                    ),
                    _point(
                        BASE_NS,
                        BASE_NS + MIN,
                        5000,
                        type="cacheRead",
                        model="claude-sonnet-4-5",
                        **s1,
                    ),
                ],
            ),
            # a cumulative counter (the SDKs' default): 10, 25, then a reset to 4
            _sum(
                "claude_code.lines_of_code.count",
                "count",
                [
                    _point(BASE_NS, BASE_NS + MIN, 10, type="added", **s1),
                    _point(BASE_NS, BASE_NS + 2 * MIN, 25, type="added", **s1),
                    _point(BASE_NS, BASE_NS + 3 * MIN, 4, type="added", **s1),
                ],
                temporality=2,
            ),
            {  # an up-down counter, cumulative: 5, then 3 (a change of -2, not a reset)
                "name": "claude_code.active_sessions",
                "unit": "1",
                "sum": {
                    "aggregationTemporality": 2,
                    "isMonotonic": False,
                    "dataPoints": [
                        _point(BASE_NS, BASE_NS + MIN, 5, **s1),
                        _point(BASE_NS, BASE_NS + 2 * MIN, 3, **s1),
                    ],
                },
            },
            {
                "name": "process.memory",
                "unit": "By",
                "gauge": {
                    "dataPoints": [
                        _point(0, BASE_NS + MIN, 100, host="a"),
                        _point(0, BASE_NS + 2 * MIN, 150, host="a"),
                        _point(0, BASE_NS + MIN, 70, host="b"),
                    ]
                },
            },
            {
                "name": "gemini_cli.api.request.latency",
                "unit": "ms",
                "histogram": {
                    "aggregationTemporality": 2,
                    "dataPoints": [
                        {
                            "startTimeUnixNano": str(BASE_NS),
                            "timeUnixNano": str(BASE_NS + MIN),
                            "count": "3",
                            "sum": 600.0,
                            "bucketCounts": ["1", "2", "0"],
                            "explicitBounds": [100, 1000],
                            "min": 50.0,
                            "max": 400.0,
                        },
                        {
                            "startTimeUnixNano": str(BASE_NS),
                            "timeUnixNano": str(BASE_NS + 2 * MIN),
                            "count": "5",
                            "sum": 3600.0,
                            "bucketCounts": ["1", "3", "1"],
                            "explicitBounds": [100, 1000],
                            "min": 50.0,
                            "max": 2500.0,
                        },
                    ],
                },
            },
            {"name": "x.exp", "exponentialHistogram": {"dataPoints": [{}, {}]}},
            _sum("bad.value", "1", [_point(BASE_NS, BASE_NS + MIN, 1, k="v") | {"asInt": "NaN"}]),
            _sum("no.time", "1", [{"asInt": "3"}]),
        ],
    )
    response = await _post(api, key, claude)
    assert response.status_code == 200, response.text
    partial = response.json()["partialSuccess"]
    assert partial["rejectedDataPoints"] == "2"
    assert "point 19: no.time: timeUnixNano is required" in partial["errorMessage"]
    assert (
        "2 point(s) of exponential histograms or summaries were skipped" in partial["errorMessage"]
    )
    # a retry: duplicates, nothing doubles
    again = await _post(api, key, claude)
    assert again.status_code == 200
    # a cumulative point older than its series' latest: out of order, rejected
    late = _body(
        "claude-code",
        [
            _sum(
                "claude_code.lines_of_code.count",
                "count",
                [_point(BASE_NS, BASE_NS + MIN + 1, 12, type="added", **s1)],
                temporality=2,
            )
        ],
    )
    late_answer = (await _post(api, key, late)).json()["partialSuccess"]
    assert (
        late_answer["rejectedDataPoints"] == "1" and "out of order" in late_answer["errorMessage"]
    )

    reader = await api.key(role=Role.VIEWER)
    data = await api.data(
        reader, QUERY, {"names": ["claude_code.cost.usage"], "groupBy": ["model"]}
    )
    cost = {g["group"]["model"]: g for g in data["agentMetrics"]}
    assert cost["claude-sonnet-4-5"]["total"] == 0.75 and cost["claude-sonnet-4-5"]["points"] == 2
    assert cost["claude-haiku-4-5"]["total"] == 0.125
    assert (cost["claude-sonnet-4-5"]["kind"], cost["claude-sonnet-4-5"]["unit"]) == ("SUM", "USD")
    assert cost["claude-sonnet-4-5"]["lastAt"].startswith(
        time.strftime("%Y-%m-%dT%H:%M", time.gmtime((BASE_NS + 2 * MIN) / 1e9))
    )

    data = await api.data(reader, QUERY, {"groupBy": ["type"]})
    by = {(g["name"], g["group"]["type"]): g for g in data["agentMetrics"]}
    assert by[("claude_code.token.usage", "cacheRead")]["total"] == 5000
    lines = by[("claude_code.lines_of_code.count", "added")]
    assert (lines["total"], lines["points"], lines["series"]) == (10 + 15 + 4, 3, 1)
    assert by[("claude_code.active_sessions", None)]["total"] == 3
    gauge = by[("process.memory", None)]
    assert (gauge["kind"], gauge["total"], gauge["last"], gauge["series"]) == (
        "GAUGE",
        None,
        220,
        2,
    )
    hist = by[("gemini_cli.api.request.latency", None)]
    assert (hist["kind"], hist["count"], hist["total"]) == ("HISTOGRAM", 5, 3600.0)
    assert (hist["minimum"], hist["maximum"]) == (50.0, 2500.0)
    assert ("x.exp", None) not in by and ("bad.value", None) not in by

    # a range that holds only the first minute's points
    first_minute = await api.data(
        reader,
        """query($start: DateTime!, $end: DateTime!) {
          agentMetrics(
            range: {start: $start, end: $end}, names: ["claude_code.lines_of_code.count"]
          ) {
            total points
          }
        }""",
        {
            "start": _iso(BASE_NS),
            "end": _iso(BASE_NS + MIN + 1_000_000_000),
        },
    )
    assert first_minute["agentMetrics"] == [{"total": 10, "points": 1}]

    # another workspace sees none of it; an ingest-only key cannot read
    other = await api.key(workspace="other", role=Role.ADMIN)
    assert (await api.data(other, QUERY))["agentMetrics"] == []
    denied = await api.graphql(key, QUERY)
    assert denied["errors"][0]["extensions"]["code"] == "FORBIDDEN"


def _iso(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(ns // 1_000_000_000))


async def test_retention_purges_old_points(api: Api) -> None:
    key = await api.key()
    old_ns = BASE_NS - 200 * 86_400 * 1_000_000_000  # past the 90 days of raw retention
    body = _body(
        "claude-code",
        [
            _sum(
                "claude_code.session.count",
                "count",
                [_point(old_ns - MIN, old_ns, 1), _point(BASE_NS - MIN, BASE_NS, 2)],
            )
        ],
    )
    assert (await _post(api, key, body)).json() == {}
    report = await api.services.retention.run_once()  # type: ignore[union-attr]
    assert report["ok"] is True and report["purged"]["metric_points"] == 1
    data = await api.data(key, QUERY, {"names": ["claude_code.session.count"]})
    assert [(g["total"], g["points"]) for g in data["agentMetrics"]] == [(2, 1)]
