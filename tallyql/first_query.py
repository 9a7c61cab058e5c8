"""The README's first query: one copy, shown in GraphiQL's default tab, printed by
`tallyql serve --demo`, and checked against the README by tests/test_readme.py."""

from __future__ import annotations

FIRST_QUERY = """\
{
  me { workspace role }
  overview(range: {preset: LAST_7D}) {
    totalRequests successRate p95LatencyMs costUsd
    previous { totalRequests costUsd }
  }
  breakdown(dimension: MODEL, metrics: [COST_USD, REQUESTS], range: {preset: LAST_7D}, first: 5) {
    totalCount
    nodes { key values }
  }
  timeseries(metrics: [COST_USD], range: {preset: LAST_7D, timezone: "Europe/Paris"},
             groupBy: PROVIDER, limitGroups: 3) {
    granularity buckets
    series { metric group isOther values }
  }
  requests(range: {preset: LAST_24H}, first: 5) {
    totalCount
    nodes { timestamp provider model status inputTokens outputTokens costUsd latencyMs }
  }
}
"""
