from __future__ import annotations

from tests.conftest import Api

EVENTS = [
    {
        "id": f"e{i}",
        "timestamp": f"2026-11-20T{10 + i % 5:02d}:{i % 60:02d}:00Z",
        "provider": "openai" if i % 3 else "anthropic",
        "model": "gpt-4o" if i % 3 else "claude-sonnet-4-5",
        "input_tokens": 1000 + i,
        "output_tokens": 100,
        "latency_ms": 100.0 + i,
        "user_id": f"u{i % 4}",
        "status": "error" if i % 10 == 0 else "success",
    }
    for i in range(60)
]
RANGE = {"start": "2026-11-20T00:00:00Z", "end": "2026-11-21T00:00:00Z"}


async def test_overview_timeseries_breakdown(api: Api) -> None:
    key = await api.key()
    await api.ingest(key, EVENTS)
    data = await api.data(
        key,
        """query($r: TimeRangeInput!) {
          overview(range: $r) { totalRequests errorRate activeUsers p50LatencyMs costUsd
                                previous { totalRequests } changes { field current } }
          timeseries(metrics: [REQUESTS, COST_USD], range: $r, groupBy: MODEL) {
            granularity buckets series { metric group isOther values } }
          breakdown(dimension: USER, metrics: [REQUESTS], range: $r, first: 3) {
            totalCount hasNextPage nodes { key values } }
          hourlyDistribution(metric: REQUESTS, range: $r)
          errors(range: $r) { totalErrors byType { type count } byModel { model errors } }
          metrics(query: {metrics: [REQUESTS], range: $r, dimensions: [{dimension: PROVIDER}]}) {
            rows { keys values } columns { keys values } }
        }""",
        {"r": RANGE},
    )
    ov = data["overview"]
    assert ov["totalRequests"] == 60
    assert ov["errorRate"] == 6 / 60
    assert ov["activeUsers"] == 4
    assert ov["previous"]["totalRequests"] == 0
    assert len(data["timeseries"]["buckets"]) == 24
    requests = [s for s in data["timeseries"]["series"] if s["metric"] == "REQUESTS"]
    assert sum(sum(s["values"]) for s in requests) == 60
    assert data["breakdown"]["totalCount"] == 4
    assert data["breakdown"]["hasNextPage"] is True
    assert sum(data["hourlyDistribution"]) == 60
    assert data["errors"]["totalErrors"] == 6
    assert sorted(r["keys"][0] for r in data["metrics"]["rows"]) == ["anthropic", "openai"]
