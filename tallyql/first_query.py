"""The first query a newcomer runs: the README's, printed by `tallyql serve --demo` and shown in
GraphiQL's first tab. tests/test_readme.py keeps the README's copy identical."""

FIRST_QUERY = """{
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
}"""
