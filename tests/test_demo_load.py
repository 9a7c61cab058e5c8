"""The demo loader's bulk path: every generated event lands once, a second load finds them
all present, the rollups answer what raw events answer, and on PostgreSQL the tables are left
analysed (rollups and sessions vacuumed too)."""

from __future__ import annotations

from sqlalchemy import text

from tallyql.auth.principal import Role
from tallyql.demo.load import RAW_TABLES, load_demo
from tests.conftest import Api

QUERY = """query($r: TimeRangeInput!) {
  overview(range: $r) { totalRequests errorRate costUsd p95LatencyMs activeUsers modelsUsed }
  breakdown(dimension: MODEL, metrics: [REQUESTS, COST_USD], range: $r, first: 50) {
    totalCount nodes { key values } }
}"""


async def test_demo_load_lands_every_event_once(api: Api) -> None:
    services = api.services
    report = await load_demo(services, "demo", 4_000, 3, seed=7)
    assert (report.accepted, report.duplicates) == (4_000, 0)
    again = await load_demo(services, "demo", 4_000, 3, seed=7)
    assert (again.accepted, again.duplicates) == (0, 4_000)

    key, _ = await services.keys.create("demo", Role.ADMIN, "t")  # forcing a plan is for admins
    variables = {"r": {"preset": "LAST_7D"}}
    planned = await api.data(key, QUERY, variables)
    raw = (
        await api.client.post(
            "/graphql",
            json={"query": QUERY, "variables": variables},
            headers={"Authorization": f"Bearer {key}", "X-Tallyql-Plan": "raw"},
        )
    ).json()["data"]
    assert planned == raw
    assert planned["overview"]["totalRequests"] == 4_000

    if services.db.is_postgres:
        async with services.db.read() as conn:
            stats = {
                name: (vacuumed, analysed)
                for name, vacuumed, analysed in (
                    await conn.execute(
                        text(
                            "SELECT relname, last_vacuum IS NOT NULL, last_analyze IS NOT NULL "
                            "FROM pg_stat_user_tables"
                        )
                    )
                ).all()
            }
        assert stats["sessions"] == (True, True)
        assert stats["rollup_models_h"] == (True, True)
        assert all(stats[name][1] for name in RAW_TABLES if name in stats)
