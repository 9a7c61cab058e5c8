"""Soak: a real server under mixed load for N minutes; errors, RSS over time, p95 latencies.

Starts `tallyql serve` as a subprocess on a scratch PostgreSQL database next to the one named
by --database-url (or a temporary SQLite file with `--database-url sqlite`), then for
--minutes runs at once:
- ingest at --rate events/s (POST /v1/events, batches of --batch, several workspaces);
- dashboard queries from --query-clients clients in turn (overview, timeseries, breakdown,
  sessions, a REST export);
- --subscribers graphql-transport-ws subscriptions (`events`, requests and cost updates),
  of which --churn are closed and opened again every minute (memory must come back when
  subscribers leave);
and samples the server's RSS every --sample seconds. Prints errors by kind (any non-2xx
answer, GraphQL error, failed or closed subscription), each sample, p95 per operation, and
the RSS growth after --warmup seconds (target: 0 errors, RSS within 10 %).

    .venv/bin/python bench/soak.py                      # 10 minutes on PostgreSQL
    .venv/bin/python bench/soak.py --minutes 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent))

from live import event, start_server  # bench/ is the script's directory
from support import admin, tallyql

SUBSCRIPTION = """subscription {
  events(types: [REQUEST, COST_UPDATE], interval: 5) {
    __typename
    ... on RequestEvent { id committedAt costUsd }
    ... on CostUpdate { sinceStart { requests costUsd } today { requests } }
    ... on Lagged { count }
  }
}"""
QUERIES: dict[str, str] = {
    "overview": """query($r: TimeRangeInput!) { overview(range: $r) {
        totalRequests costUsd errorRate p95LatencyMs activeUsers } }""",
    "timeseries": """query($r: TimeRangeInput!) { timeseries(
        metrics: [REQUESTS, COST_USD, P95_LATENCY_MS], range: $r) {
        buckets series { metric values } } }""",
    "breakdown_models": """query($r: TimeRangeInput!) { breakdown(dimension: MODEL,
        metrics: [COST_USD, REQUESTS], range: $r) { totalCount nodes { key values } } }""",
    "sessions": """query($r: TimeRangeInput!) { sessions(range: $r, orderBy: COST, first: 10) {
        nodes { id costUsd requestCount } } }""",
}


LIMITS = httpx.Limits(max_connections=16, keepalive_expiry=2.0)
"""Idle connections are dropped by the client before uvicorn closes them (after 5 s): with
both at 5 s, a request sent on a connection the server was closing failed (ReadError)."""


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Soak:
    def __init__(self, args: argparse.Namespace, url: str, keys: list[tuple[str, str]]) -> None:
        self.args = args
        self.url = url
        self.keys = keys  # (ingest key, viewer key) per workspace
        self.errors: Counter[str] = Counter()
        self.examples: dict[str, str] = {}
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.ingested = 0
        self.received = 0
        self.lagged = 0
        self.live_subscribers = 0
        self.deadline = 0.0

    def error(self, kind: str, detail: str) -> None:
        self.errors[kind] += 1
        self.examples.setdefault(kind, detail[:300])

    async def ingest(self) -> None:
        interval = self.args.batch / self.args.rate
        n = 0
        tasks: set[asyncio.Task[None]] = set()
        async with httpx.AsyncClient(base_url=self.url, timeout=60, limits=LIMITS) as client:

            async def send(n: int) -> None:
                ingest_key, _ = self.keys[n % len(self.keys)]
                first = n * self.args.batch
                events = [event(f"s-{first + i}", first + i) for i in range(self.args.batch)]
                headers = {"Authorization": f"Bearer {ingest_key}"}
                started = time.perf_counter()
                try:
                    response = await client.post(
                        "/v1/events", content=orjson.dumps(events), headers=headers
                    )
                except httpx.HTTPError as exc:
                    self.error("ingest transport", repr(exc))
                    return
                self.latencies["ingest /v1/events"].append(time.perf_counter() - started)
                if response.status_code != 200:
                    self.error(f"ingest HTTP {response.status_code}", response.text)
                    return
                body = response.json()
                if body["accepted"] != len(events):
                    self.error("ingest rejected", response.text)
                self.ingested += body["accepted"]

            started = time.monotonic()
            while True:
                due = started + n * interval
                if due >= self.deadline:
                    break
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                task = asyncio.create_task(send(n))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                n += 1
            if tasks:
                await asyncio.gather(*tasks)

    async def query(self, seed: int) -> None:
        rng = random.Random(seed)
        names = list(QUERIES)
        async with httpx.AsyncClient(base_url=self.url, timeout=60, limits=LIMITS) as client:
            while time.monotonic() < self.deadline:
                _, viewer = self.keys[rng.randrange(len(self.keys))]
                headers = {"Authorization": f"Bearer {viewer}"}
                end = datetime.now(UTC)
                window = {"start": (end - timedelta(hours=6)).isoformat(), "end": end.isoformat()}
                name = rng.choice([*names, "export"])
                started = time.perf_counter()
                try:
                    if name == "export":
                        response = await client.get(
                            "/v1/export/requests?preset=LAST_1H&format=ndjson", headers=headers
                        )
                    else:
                        body = {"query": QUERIES[name], "variables": {"r": window}}
                        response = await client.post("/graphql", json=body, headers=headers)
                except httpx.HTTPError as exc:
                    self.error(f"query {name} transport", repr(exc))
                    continue
                self.latencies[f"query {name}"].append(time.perf_counter() - started)
                if response.status_code != 200:
                    self.error(f"query {name} HTTP {response.status_code}", response.text)
                elif name != "export" and response.json().get("errors"):
                    self.error(f"query {name} GraphQL error", response.text)
                await asyncio.sleep(self.args.query_pause)

    async def subscriber(self, index: int, stop: asyncio.Event) -> None:
        """One subscription until `stop` (or the end); every message is checked."""
        _, viewer = self.keys[index % len(self.keys)]
        ws_url = self.url.replace("http", "ws", 1) + "/graphql"
        try:
            async with connect(
                ws_url, subprotocols=["graphql-transport-ws"], max_size=None, ping_interval=None
            ) as ws:
                init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {viewer}"}}
                await ws.send(orjson.dumps(init).decode())
                ack = orjson.loads(await asyncio.wait_for(ws.recv(), 30))
                if ack["type"] != "connection_ack":
                    self.error("subscription refused", str(ack))
                    return
                message = {"type": "subscribe", "id": "1", "payload": {"query": SUBSCRIPTION}}
                await ws.send(orjson.dumps(message).decode())
                self.live_subscribers += 1
                try:
                    while not stop.is_set() and time.monotonic() < self.deadline:
                        try:
                            raw = await asyncio.wait_for(ws.recv(), 1.0)
                        except TimeoutError:
                            continue
                        got = orjson.loads(raw)
                        if got["type"] != "next" or got["payload"].get("errors"):
                            self.error("subscription message", str(got))
                            return
                        item = got["payload"]["data"]["events"]
                        if item["__typename"] == "RequestEvent":
                            self.received += 1
                        elif item["__typename"] == "Lagged":
                            self.lagged += item["count"]
                finally:
                    self.live_subscribers -= 1
        except Exception as exc:  # a refused or dropped connection is an error of the run
            self.error(f"subscription {type(exc).__name__}", repr(exc))

    async def subscribers(self) -> None:
        """--subscribers at all times; --churn of them replaced every minute."""
        running: list[tuple[asyncio.Event, asyncio.Task[None]]] = []
        for i in range(self.args.subscribers):
            stop = asyncio.Event()
            running.append((stop, asyncio.create_task(self.subscriber(i, stop))))
        index = self.args.subscribers
        while time.monotonic() + 60 < self.deadline:
            await asyncio.sleep(60)
            for slot in range(min(self.args.churn, len(running))):
                stop, task = running[slot]
                stop.set()
                await task
                fresh = asyncio.Event()
                running[slot] = (fresh, asyncio.create_task(self.subscriber(index, fresh)))
                index += 1
        await asyncio.gather(*(task for _, task in running))

    async def sample(self, pid: int, samples: list[tuple[float, float]]) -> None:
        started = time.monotonic()
        while time.monotonic() < self.deadline:
            rss = rss_mib(pid)
            at = time.monotonic() - started
            samples.append((at, rss))
            print(
                f"  t={at:5.0f} s  RSS {rss:7.1f} MiB  ingested {self.ingested:>8,}  "
                f"received {self.received:>10,}  subscribers {self.live_subscribers:>3}  "
                f"errors {sum(self.errors.values())}",
                flush=True,
            )
            await asyncio.sleep(self.args.sample)

    async def run(self, pid: int) -> list[tuple[float, float]]:
        self.deadline = time.monotonic() + self.args.minutes * 60
        samples: list[tuple[float, float]] = []
        await asyncio.gather(
            self.sample(pid, samples),
            self.subscribers(),
            self.ingest(),
            *(self.query(seed) for seed in range(self.args.query_clients)),
        )
        samples.append((self.args.minutes * 60, rss_mib(pid)))
        return samples


def report(soak: Soak, samples: list[tuple[float, float]], warmup: float) -> None:
    print()
    print(f"ingested {soak.ingested:,} events; subscribers received {soak.received:,} items, "
          f"{soak.lagged:,} dropped as Lagged")  # fmt: skip
    total = sum(soak.errors.values())
    print(f"errors: {total}")
    for kind, count in soak.errors.most_common():
        print(f"  {count:6d}  {kind}: {soak.examples[kind]}")
    print("p50 / p95 / max latency (ms):")
    for name in sorted(soak.latencies):
        values = soak.latencies[name]
        print(
            f"  {name:28s} {quantile(values, 0.5) * 1000:8.1f} {quantile(values, 0.95) * 1000:8.1f}"
            f" {max(values) * 1000:8.1f}  ({len(values):,} calls)"
        )
    after = [rss for at, rss in samples if at >= warmup]
    if len(after) >= 2:
        first, peak, last = after[0], max(after), after[-1]
        growth = (peak - first) / first * 100
        verdict = "flat" if growth <= 10 and total == 0 else "NOT within target"
        print(
            f"RSS after {warmup:.0f} s warm-up: {first:.1f} MiB first, {peak:.1f} peak, "
            f"{last:.1f} last: {growth:+.1f} % ({verdict}; target 0 errors, <= 10 %)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--subscribers", type=int, default=50)
    parser.add_argument("--churn", type=int, default=10, help="subscribers replaced per minute")
    parser.add_argument("--workspaces", type=int, default=2)
    parser.add_argument("--rate", type=float, default=200.0, help="events/s")
    parser.add_argument("--batch", type=int, default=20, help="events per ingest call")
    parser.add_argument("--query-clients", type=int, default=2)
    parser.add_argument("--query-pause", type=float, default=0.2, help="seconds between queries")
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between RSS samples")
    parser.add_argument("--warmup", type=float, default=None, help="seconds (default: 1/5 run)")
    args = parser.parse_args()
    warmup = args.warmup if args.warmup is not None else args.minutes * 60 / 5
    workdir = Path(tempfile.mkdtemp(prefix="tallyql-soak-"))
    scratch = None
    server = None
    try:
        if args.database_url.startswith("postgres"):
            base, _, _ = args.database_url.rpartition("/")
            scratch = f"tallyql_soak_{uuid.uuid4().hex[:8]}"
            asyncio.run(admin(args.database_url, f'CREATE DATABASE "{scratch}"'))
            database_url = f"{base}/{scratch}"
        else:
            database_url = f"sqlite:///{workdir / 'tallyql.db'}"
        env = {
            **os.environ,
            "TALLYQL_DATA_DIR": str(workdir),
            "TALLYQL_DATABASE_URL": database_url,
            "TALLYQL_LOG_LEVEL": "warning",
        }
        tallyql("migrate", env=env)
        keys = []
        for w in range(args.workspaces):
            pair = tuple(
                tallyql(
                    "keys", "create", "--workspace", f"soak{w}", "--role", role, env=env
                ).split()[-1]
                for role in ("ingest", "viewer")
            )
            keys.append(pair)
        server, url = start_server(env, workdir)
        print(
            f"server pid {server.pid} on {url}; {database_url.split('@')[-1]}; "
            f"{args.minutes:g} min, {args.rate:g} events/s, {args.subscribers} subscribers "
            f"({args.churn}/min replaced), {args.query_clients} query clients",
            flush=True,
        )
        soak = Soak(args, url, keys)  # type: ignore[arg-type]
        samples = asyncio.run(soak.run(server.pid))
        if server.poll() is not None:
            soak.error("server exited", (workdir / "server.log").read_text()[-300:])
        report(soak, samples, warmup)
    finally:
        if server is not None:
            server.terminate()
            with contextlib.suppress(Exception):
                server.wait(30)
        if scratch:
            asyncio.run(admin(args.database_url, f'DROP DATABASE "{scratch}" WITH (FORCE)'))
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
