"""Read replicas: the dashboard mix with and without a real streaming standby.

    python bench/replicas.py --database-url postgresql://postgres@127.0.0.1:5432/test

Makes a scratch database on the server of `--database-url` (dropped at the end), loads demo
events (`tallyql demo`), makes a hot standby of the server with `pg_basebackup -R -X stream`
(tests/support/standby.py: run as root or postgres), and runs the app in this process:

- the dashboard mix (bench/query.py's fields over LAST_7D) `--rounds` times without read URLs,
  then with the standby: the CPU the primary's backends of the scratch database spent per
  request (from /proc, so other databases' work is not counted; background jobs are off, and
  parallel workers, which start and end within a statement, are not seen), the standby's, and
  the share of requests the standby answered. On one machine both servers share the cores:
  this is the primary's CPU saved, not a speed-up;
- freshness: `--fresh` times, 20 events ingested then `overview` asked at once: the time
  requests waited for the standby to replay them (p50/p99) and where they were answered;
- the time from stopping the standby (pg_ctl stop -m fast) until the router skips it.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.query import QUERIES
from bench.support import admin, tallyql
from tallyql.app import create_app
from tallyql.config import Settings
from tallyql.storage.standbys import DOWN
from tests.support.standby import Standby, make_standby, remove, wait_caught_up, wait_streaming

MIX = ("overview", "timeseries", "timeseries_by_model", "breakdown_models", "breakdown_users")
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    found = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found[pid] = (int(fields[11]) + int(fields[12])) / TICKS
    return found


async def backends(url: str, database: str) -> list[int]:
    conn = await asyncpg.connect(url)
    try:
        # client backends only: an autovacuum worker on the fresh tables is not a request's
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1"
            " AND backend_type = 'client backend'",
            database,
        )
        return [r["pid"] for r in rows if r["pid"] != conn.get_server_pid()]
    finally:
        await conn.close()


class CpuMeter:
    """CPU of one database's backends on one server between start() and stop()."""

    def __init__(self, url: str, database: str) -> None:
        self.url, self.database = url, database
        self.before: dict[int, float] = {}

    async def start(self) -> None:
        self.before = cpu_seconds(await backends(self.url, self.database))

    async def stop(self) -> float:
        after = cpu_seconds(await backends(self.url, self.database))
        return sum(v - self.before.get(pid, 0.0) for pid, v in after.items())


async def ask(client: httpx.AsyncClient, key: str, query: str) -> dict[str, Any]:
    response = await client.post(
        "/graphql",
        json={"query": query, "variables": {"r": {"preset": "LAST_7D"}}},
        headers={"Authorization": f"Bearer {key}", "X-Tallyql-Explain": "1"},
    )
    body = response.json()
    assert "errors" not in body, body
    return body


async def mix(
    settings: Settings, rounds: int, primary: str, standby_url: str | None, database: str
) -> None:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        services = app.state.services
        key, _ = await services.keys.create("demo", _admin_role(), "bench")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://b") as client:
            for name in MIX:  # warm caches and pools
                await ask(client, key, QUERIES[name])
            meters = [CpuMeter(primary, database)]
            if standby_url:
                meters.append(CpuMeter(standby_url, database))
            for meter in meters:
                await meter.start()
            router = services.db.standbys
            base = (router.primary_reads, router.standbys[0].reads) if router else (0, 0)
            started = time.perf_counter()
            for _ in range(rounds):
                for name in MIX:
                    await ask(client, key, QUERIES[name])
            wall = time.perf_counter() - started
            requests = rounds * len(MIX)
            spent = [await meter.stop() for meter in meters]
            label = "with standby" if standby_url else "primary only"
            line = (
                f"{label:>13}: {requests} requests in {wall:.1f} s; primary backends "
                f"{spent[0] / requests * 1000:.2f} ms CPU/request"
            )
            if router is not None:
                on_primary = router.primary_reads - base[0]
                on_standby = router.standbys[0].reads - base[1]
                share = on_standby / max(1, on_primary + on_standby)
                line += (
                    f", standby backends {spent[1] / requests * 1000:.2f} ms CPU/request, "
                    f"share of requests answered by the standby {share:.1%}"
                )
            print(line, flush=True)
            if router is not None:
                await freshness(client, services, key)


def _admin_role() -> Any:
    from tallyql.auth.principal import Role

    return Role.ADMIN


async def freshness(client: httpx.AsyncClient, services: Any, key: str) -> None:
    from datetime import UTC, datetime

    waits, answered = [], {"primary": 0, "standby": 0}
    for i in range(ARGS.fresh):
        now = datetime.now(UTC).isoformat()
        events = [
            {"id": f"fresh-{i}-{j}-{uuid.uuid4().hex[:6]}", "timestamp": now, "model": "m"}
            for j in range(20)
        ]
        response = await client.post(
            "/v1/events", json=events, headers={"Authorization": f"Bearer {key}"}
        )
        assert response.status_code == 200, response.text
        body = await ask(client, key, "{ overview(range: {preset: LAST_24H}) { totalRequests } }")
        db = body["extensions"]["database"]
        waits.append(db["waitedMs"])
        answered["primary" if db["answeredBy"] == "primary" else "standby"] += 1
    waits.sort()
    p99 = waits[min(len(waits) - 1, round(0.99 * (len(waits) - 1)))]
    print(
        f"freshness: {ARGS.fresh} ingest-then-query pairs (TALLYQL_READ_WAIT_MS="
        f"{services.settings.read_wait_ms:g}): wait p50 {statistics.median(waits):.1f} ms, "
        f"p99 {p99:.1f} ms; answered by the standby {answered['standby']}, "
        f"by the primary {answered['primary']}",
        flush=True,
    )


async def detection(settings: Settings, standby: Standby) -> None:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        node = app.state.services.db.standbys.standbys[0]
        await until(lambda: node.state == "streaming")
        times = []
        for _ in range(ARGS.stops):
            # from the stop command: PostgreSQL refuses new connections as soon as its
            # shutdown starts, which is when the standby stops being usable
            stopping = time.monotonic()
            stop = asyncio.create_task(asyncio.to_thread(standby.stop))
            await until(lambda: node.state == DOWN)
            times.append(time.monotonic() - stopping)
            await stop
            await asyncio.to_thread(standby.start)
            await until(lambda: node.state == "streaming")
        print(
            f"detection: a standby told to stop (pg_ctl stop -m fast) is skipped "
            f"{statistics.median(times) * 1000:.0f} ms later (median of {len(times)}, max "
            f"{max(times) * 1000:.0f} ms; checks every 250 ms)",
            flush=True,
        )


async def until(check: Callable[[], bool]) -> None:
    """Return once check() holds, looking every 5 ms."""
    for _ in itertools.count():
        if check():
            return
        await asyncio.sleep(0.005)


ARGS = argparse.Namespace()


async def run(url: str) -> None:
    parts = urlsplit(url)
    database = f"tallyql_bench_replicas_{os.getpid()}"
    server = f"{parts.scheme}://{parts.netloc}"
    bench_url = f"{server}/{database}"
    await admin(url, f'CREATE DATABASE "{database}"')
    standby: Standby | None = None
    try:
        env = {**os.environ, "TALLYQL_DATABASE_URL": bench_url}
        tallyql("demo", "--events", str(ARGS.events), "--days", "7", env=env)
        await admin(bench_url, "VACUUM ANALYZE")  # nothing left for autovacuum meanwhile
        standby = make_standby(bench_url)
        standby_url = standby.url(bench_url)
        await wait_streaming(standby_url)
        await wait_caught_up(standby_url, bench_url)
        base = Settings(
            database_url=bench_url,
            cost_key_limit_per_minute=1_000_000_000,
            share_identical_queries=False,
            # no background work on the scratch database: the backends measured serve the
            # requests (and, with the standby, the router's position queries) only
            retention_interval_seconds=0.0,
            rollup_compaction_seconds=0.0,
            report_poll_seconds=0.0,
            provider_sync_poll_seconds=0.0,
            budget_interval_seconds=3600.0,
            alert_interval_seconds=3600.0,
            webhook_poll_seconds=3600.0,
            price_refresh_seconds=3600.0,
            live_cross_replica=False,
        )
        await mix(base, ARGS.rounds, bench_url, None, database)
        with_standby = Settings(
            **{**base.__dict__, "database_read_urls": standby_url, "read_wait_ms": ARGS.wait_ms}
        )
        await mix(with_standby, ARGS.rounds, bench_url, standby_url, database)
        await detection(with_standby, standby)
    finally:
        if standby is not None:
            remove(standby)
        await admin(url, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--fresh", type=int, default=100)
    parser.add_argument("--stops", type=int, default=5)
    parser.add_argument("--wait-ms", type=float, default=250.0)
    parser.parse_args(namespace=ARGS)
    asyncio.run(run(ARGS.database_url))


if __name__ == "__main__":
    main()
