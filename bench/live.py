"""Live subscriptions under load: many WebSocket subscribers while events are ingested.

Starts `tallyql serve` as a subprocess on a fresh database (a temporary SQLite file, or a
scratch PostgreSQL database next to the one named by --database-url), then:

1. baseline: ingests at --rate events/s for --duration seconds with nobody subscribed, and
   then as fast as it can for --burst seconds (maximal ingest throughput);
2. opens --subscribers graphql-transport-ws subscriptions (`events(types: [REQUEST,
   COST_UPDATE])`, spread evenly over --workspaces workspaces, events likewise) from
   --client-procs client processes;
3. ingests at --rate for --duration again: every subscriber should receive every event of
   its workspace; each receipt's latency is measured from the event's `committedAt` (the
   server's commit time; same host, same clock) to its arrival at the client;
4. ingests as fast as it can for --burst seconds again, with the subscribers connected.

Prints p50/p99 delivery latency, events lost by subscribers that kept up (no Lagged notice),
frames and bytes received per second, ingest throughput paced and maximal with versus
without subscribers, the server's CPU (seconds of CPU per second, in each paced phase), its
peak RSS and the machine's load average.

`--replicas N` starts N server processes on the one database (PostgreSQL: the live relay
carries events between them); events are ingested on the first, subscribers are spread over
all of them (by client process), and CPU and RSS are summed over them.

`--mode batches` subscribes with `eventBatches(types: [REQUEST], maxLatencyMs:
--max-latency-ms)` instead of one item per event (`--mode events`, the default): every
event of each batch is timed against its own `committedAt`.

`--client-nice 19` runs the subscriber clients at the lowest priority, so that they take only
the CPU the server and PostgreSQL leave (as clients on other hosts would; on one machine they
otherwise compete with the server for the cores). `--baseline-duration` shortens the first
paced phase (a 10-minute soak: `--duration 600 --baseline-duration 20`); the server's RSS
is sampled every `--rss-every` seconds of the paced phase with subscribers.

    .venv/bin/python bench/live.py --subscribers 100 --duration 10        # a quick look
    .venv/bin/python bench/live.py                                         # 1000 x 1000/s x 60 s
    .venv/bin/python bench/live.py --database-url postgresql://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/live.py --mode batches --max-latency-ms 100 --database-url ...
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from live_clients import histogram_quantile, run_clients
from support import (  # bench/ is the script's directory
    admin,
    cpu_seconds,
    cpu_split,
    free_port,
    peak_rss_mib,
    rss_mib,
    tallyql,
)


@dataclass
class Ingest:
    events: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def postgres_cpu() -> float:
    """CPU seconds used so far by this machine's PostgreSQL processes (all of them: the
    database is on this machine; processes that ended since are not counted)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if text[text.find("(") + 1 : text.rfind(")")] == "postgres":
            total += cpu_seconds(int(stat.parent.name))
    return total


async def live_report(url: str) -> dict[str, Any]:
    """The live part of the server's /health."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        health = (await client.get("/health")).json()
    return dict(health.get("jobs", {}).get("live") or {})


async def wait_registered(url: str, count: int) -> None:
    """Until the server's /health shows `count` live subscribers (batch subscriptions send
    nothing before the first event, so the clients cannot tell)."""
    for _ in range(600):
        live = await live_report(url)
        if live.get("subscribers", 0) >= count:
            return
        await asyncio.sleep(0.5)
    raise SystemExit(f"the server did not register {count} subscribers: {live}")


def slices(phase: str, start: dict[str, Any], end: dict[str, Any]) -> str:
    """How many feed-sender slices the first server charged between two /health reports, and
    how many of them while ingest was saturated (the senders then keep to their pressed
    share)."""
    charges = end["sender_charges"] - start["sender_charges"]
    pressed = end["sender_pressed_charges"] - start["sender_pressed_charges"]
    return (
        f"feed sender slices during {phase}: {charges:,}, "
        f"{pressed / max(charges, 1):.0%} of them while ingest was saturated"
    )


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def event(event_id: str, n: int) -> dict[str, Any]:
    return {
        "id": event_id,
        "timestamp": datetime.now(UTC).isoformat(),
        "provider": "openai",
        "model": ("gpt-4o-mini", "gpt-4o", "o3-mini")[n % 3],
        "input_tokens": 200 + n % 50,
        "output_tokens": 40 + n % 20,
        "latency_ms": 300.0 + n % 200,
        "user_id": f"u{n % 40}",
        "session_id": f"s{n % 300}",
    }


async def ingest(
    base_url: str,
    keys: list[str],
    label: str,
    rate: float | None,
    seconds: float,
    batch: int,
    senders: int = 4,
) -> tuple[Ingest, dict[int, int]]:
    """Send batches (one workspace each, in turn) for `seconds`: paced at `rate` events/s, or
    as fast as `senders` concurrent clients go. Returns the outcome and events per workspace."""
    outcome = Ingest()
    per_workspace: dict[int, int] = {i: 0 for i in range(len(keys))}
    counter = 0
    started = time.perf_counter()
    deadline = started + seconds

    async def send(client: httpx.AsyncClient, n: int) -> None:
        nonlocal counter
        workspace = n % len(keys)
        first = counter
        counter += batch
        body = orjson.dumps([event(f"{label}-{first + i}", first + i) for i in range(batch)])
        headers = {"Authorization": f"Bearer {keys[workspace]}", "Content-Type": "application/json"}
        t0 = time.perf_counter()
        response = await client.post("/v1/events", content=body, headers=headers)
        outcome.latencies.append(time.perf_counter() - t0)
        response.raise_for_status()
        accepted = response.json()["accepted"]
        outcome.events += accepted
        per_workspace[workspace] += accepted

    limits = httpx.Limits(max_connections=senders * 2)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:
        if rate is not None:
            interval = batch / rate
            tasks: set[asyncio.Task[None]] = set()
            n = 0
            while True:
                due = started + n * interval
                if due >= deadline:
                    break
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                task = asyncio.create_task(send(client, n))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                n += 1
            if tasks:
                await asyncio.gather(*tasks)
        else:
            calls = 0

            async def sender() -> None:
                nonlocal calls
                while time.perf_counter() < deadline:
                    n = calls
                    calls += 1
                    await send(client, n)

            await asyncio.gather(*(sender() for _ in range(senders)))
    outcome.seconds = time.perf_counter() - started
    return outcome, per_workspace


def describe(name: str, outcome: Ingest) -> str:
    lat = outcome.latencies
    return (
        f"{name}: {outcome.events} events in {outcome.seconds:.1f} s = {outcome.rate:,.0f}/s "
        f"(call p50 {quantile(lat, 0.5) * 1000:.1f} ms, p99 {quantile(lat, 0.99) * 1000:.1f} ms)"
    )


def start_server(
    env: dict[str, str], workdir: Path, name: str = "server"
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "tallyql", "serve", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    for _ in range(600):
        if server.poll() is not None:
            raise SystemExit(f"server exited:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return server, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.terminate()
    raise SystemExit(f"server did not start:\n{log.read_text()}")


def prepare(args: argparse.Namespace, env: dict[str, str]) -> tuple[list[str], list[str]]:
    """Migrate, and create an ingest key and a viewer key per workspace."""
    tallyql("migrate", env=env)
    names = [f"live{i}" for i in range(args.workspaces)]
    ingest_keys = [
        tallyql("keys", "create", "--workspace", n, "--role", "ingest", env=env).split()[-1]
        for n in names
    ]
    read_keys = [
        tallyql("keys", "create", "--workspace", n, "--role", "viewer", env=env).split()[-1]
        for n in names
    ]
    return ingest_keys, read_keys


async def run(
    args: argparse.Namespace,
    servers: list[tuple[subprocess.Popen[bytes], str]],
    ingest_keys: list[str],
    read_keys: list[str],
) -> None:
    url = servers[0][1]

    def cpu() -> float:
        return sum(cpu_seconds(server.pid) for server, _ in servers)

    def system_cpu() -> float:
        return sum(cpu_split(server.pid)[1] for server, _ in servers)

    def rss() -> list[float]:
        return [peak_rss_mib(server.pid) for server, _ in servers]

    try:
        cpu_start = cpu()
        paced_alone, _ = await ingest(
            url, ingest_keys, "a", args.rate, args.baseline_duration, args.batch
        )
        cpu_alone = (cpu() - cpu_start) / paced_alone.seconds
        print(describe("paced ingest, no subscribers", paced_alone), flush=True)
        cpu_start, sys_start, pg_start = cpu(), system_cpu(), postgres_cpu()
        burst_alone, _ = await ingest(url, ingest_keys, "b", None, args.burst, args.burst_batch)
        cpu_burst_alone = (cpu() - cpu_start) / burst_alone.seconds
        sys_burst_alone = (system_cpu() - sys_start) / burst_alone.seconds
        pg_burst_alone = (postgres_cpu() - pg_start) / burst_alone.seconds
        print(describe("maximal ingest, no subscribers", burst_alone), flush=True)
        rss_before = rss()

        ws_urls = [u.replace("http", "ws") + "/graphql" for _, u in servers]
        ctx = mp.get_context("spawn")
        commands = [ctx.Queue() for _ in range(args.client_procs)]
        results: mp.Queue[Any] = ctx.Queue()
        shares = [args.subscribers // args.client_procs] * args.client_procs
        for i in range(args.subscribers % args.client_procs):
            shares[i] += 1
        procs = [
            ctx.Process(
                target=run_clients,
                args=(
                    ws_urls[i % len(ws_urls)],
                    read_keys,
                    share,
                    offset,
                    cmd,
                    results,
                    args.mode,
                    args.max_latency_ms,
                    args.client_nice,
                ),
            )
            for i, (share, offset, cmd) in enumerate(
                zip(shares, [sum(shares[:i]) for i in range(len(shares))], commands, strict=True)
            )
        ]
        for proc in procs:
            proc.start()
        ready = [results.get(timeout=300) for _ in procs]
        print(f"{sum(r['ready'] for r in ready)} subscribers connected", flush=True)
        for n, (_, server_url) in enumerate(servers):
            await wait_registered(
                server_url, sum(s for i, s in enumerate(shares) if i % len(servers) == n)
            )

        rss_samples: list[list[float]] = []

        async def sample_rss() -> None:
            while True:
                rss_samples.append([rss_mib(server.pid) for server, _ in servers])
                await asyncio.sleep(args.rss_every)

        sampler = asyncio.create_task(sample_rss())
        paced_live = await live_report(url)
        cpu_start = cpu()
        paced, per_workspace = await ingest(
            url, ingest_keys, "c", args.rate, args.duration, args.batch
        )
        sampler.cancel()
        rss_samples.append([rss_mib(server.pid) for server, _ in servers])
        cpu_with = (cpu() - cpu_start) / paced.seconds
        print(describe("paced ingest, with subscribers", paced), flush=True)
        print(slices("paced ingest", paced_live, await live_report(url)), flush=True)
        await asyncio.sleep(args.drain)
        for cmd in commands:
            cmd.put("report")
        reports = [results.get(timeout=120) for _ in procs]
        live_start = await live_report(url)
        cpu_start, sys_start, pg_start = cpu(), system_cpu(), postgres_cpu()
        clients_start = sum(cpu_seconds(proc.pid) for proc in procs if proc.pid)
        burst, _ = await ingest(url, ingest_keys, "d", None, args.burst, args.burst_batch)
        cpu_burst = (cpu() - cpu_start) / burst.seconds
        sys_burst = (system_cpu() - sys_start) / burst.seconds
        pg_burst = (postgres_cpu() - pg_start) / burst.seconds
        clients_burst = (
            sum(cpu_seconds(proc.pid) for proc in procs if proc.pid) - clients_start
        ) / burst.seconds
        live_end = await live_report(url)
        print(describe("maximal ingest, with subscribers", burst), flush=True)
        print(slices("maximal ingest", live_start, live_end), flush=True)
        # on one machine the subscribers' clients compete with the server for the cores: a
        # server that is not busy while ingest slows down is waiting for CPU, not for fan-out
        print(
            f"CPU during maximal ingest: server {cpu_burst_alone:.2f} s/s alone "
            f"({sys_burst_alone:.2f} in the kernel), {cpu_burst:.2f} s/s with subscribers "
            f"({sys_burst:.2f} in the kernel); subscriber clients {clients_burst:.2f} s/s; "
            f"PostgreSQL {pg_burst_alone:.2f} s/s alone, {pg_burst:.2f} s/s with subscribers",
            flush=True,
        )
        for cmd in commands:
            cmd.put("stop")
        for proc in procs:
            proc.join(60)
        rss_peak = rss()
    finally:
        for server, _ in servers:
            server.terminate()
        for server, _ in servers:
            server.wait(30)

    histogram: dict[int, int] = {}
    for report in reports:
        for bucket, n in report["histogram"].items():
            histogram[bucket] = histogram.get(bucket, 0) + n
    kept_up = [s for r in reports for s in r["subscribers"] if s["lagged"] == 0]
    lagging = [s for r in reports for s in r["subscribers"] if s["lagged"] > 0]
    lost = sum(per_workspace[s["workspace"]] - s["received"] for s in kept_up)
    extra = sum(max(0, s["received"] - per_workspace[s["workspace"]]) for s in kept_up)
    expected = sum(per_workspace[s["workspace"]] for s in kept_up + lagging)
    received = sum(s["received"] for s in kept_up + lagging)
    frames = sum(s["frames"] for r in reports for s in r["subscribers"])
    received_bytes = sum(s["bytes"] for r in reports for s in r["subscribers"])
    print()
    print(
        f"mode: {args.mode}"
        + (f" (maxLatencyMs {args.max_latency_ms})" if args.mode == "batches" else "")
    )
    print(
        f"subscribers: {args.subscribers} over {args.workspaces} workspace(s); ingest "
        f"{args.rate:.0f} events/s for {args.duration:.0f} s in batches of {args.batch}"
    )
    print(
        f"deliveries: {received:,} of {expected:,} expected "
        f"({received / max(expected, 1) * 100:.1f}%, {received / args.duration:,.0f}/s)"
    )
    print(
        f"frames received: {frames:,} ({frames / args.duration:,.0f}/s), "
        f"{received_bytes / 1e6:,.1f} MB ({received_bytes / args.duration / 1e6:,.2f} MB/s)"
    )
    print(
        f"delivery latency commit->receipt: p50 {histogram_quantile(histogram, 0.5) * 1000:.1f}"
        f" ms, p99 {histogram_quantile(histogram, 0.99) * 1000:.1f} ms, max "
        f"{histogram_quantile(histogram, 1.0) * 1000:.1f} ms ({sum(histogram.values()):,} samples)"
    )
    print(
        f"events lost by subscribers that kept up: {lost} ({len(kept_up)} subscribers; "
        f"{len(lagging)} lagged, {sum(s['lagged'] for s in lagging)} dropped for them; "
        f"{extra} unexpected extra)"
    )
    print(
        f"paced ingest throughput: {paced_alone.rate:,.0f}/s alone, {paced.rate:,.0f}/s with "
        f"subscribers ({(paced.rate / paced_alone.rate - 1) * 100:+.1f}%)"
    )
    print(
        f"maximal ingest throughput: {burst_alone.rate:,.0f}/s alone, {burst.rate:,.0f}/s with "
        f"subscribers ({(burst.rate / burst_alone.rate - 1) * 100:+.1f}%)"
    )
    print(
        f"server CPU during paced ingest ({len(servers)} process(es)): {cpu_alone:.2f} s/s "
        f"alone, {cpu_with:.2f} s/s with subscribers"
    )
    print(
        f"server peak RSS ({len(servers)} process(es)): "
        + ", ".join(f"{b:.0f} MiB" for b in rss_before)
        + " before subscribers; "
        + ", ".join(f"{p:.0f} MiB" for p in rss_peak)
        + " peak"
    )
    print(
        f"server RSS during paced ingest with subscribers, every {args.rss_every:.0f} s (MiB): "
        + " ".join("+".join(f"{x:.0f}" for x in sample) for sample in rss_samples)
    )
    print("load average (1, 5, 15 min): " + " ".join(f"{x:.2f}" for x in os.getloadavg()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--workspaces", type=int, default=1)
    parser.add_argument("--rate", type=float, default=1000.0, help="events/s")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per paced phase")
    parser.add_argument(
        "--baseline-duration",
        type=float,
        default=None,
        help="seconds of the paced phase without subscribers (default: --duration)",
    )
    parser.add_argument("--rss-every", type=float, default=30.0, help="seconds between RSS samples")
    parser.add_argument(
        "--client-nice",
        type=int,
        default=0,
        help="niceness of the subscriber client processes (19: they take only CPU the server "
        "and PostgreSQL leave, as clients on other hosts would)",
    )
    parser.add_argument("--batch", type=int, default=50, help="events per paced call")
    parser.add_argument("--burst", type=float, default=10.0, help="seconds of maximal ingest")
    parser.add_argument("--burst-batch", type=int, default=500, help="events per burst call")
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument("--replicas", type=int, default=1, help="server processes")
    parser.add_argument("--mode", choices=("events", "batches"), default="events")
    parser.add_argument(
        "--max-latency-ms", type=int, default=100, help="eventBatches' maxLatencyMs (batches)"
    )
    parser.add_argument("--queue-size", type=int, default=1000)
    parser.add_argument(
        "--drain",
        type=float,
        default=12.0,
        help="seconds to let deliveries end (past TALLYQL_LIVE_MAX_AGE_SECONDS, so that "
        "subscribers far behind have heard of it)",
    )
    args = parser.parse_args()
    if args.baseline_duration is None:
        args.baseline_duration = args.duration
    workdir = Path(tempfile.mkdtemp(prefix="tallyql-live-"))
    scratch = None
    try:
        if args.database_url:
            base, _, _ = args.database_url.rpartition("/")
            scratch = f"tallyql_live_{uuid.uuid4().hex[:8]}"
            asyncio.run(admin(args.database_url, f'CREATE DATABASE "{scratch}"'))
            database_url = f"{base}/{scratch}"
        else:
            database_url = f"sqlite:///{workdir / 'tallyql.db'}"
        env = {
            **os.environ,
            "TALLYQL_DATA_DIR": str(workdir),
            "TALLYQL_DATABASE_URL": database_url,
            "TALLYQL_LOG_LEVEL": "warning",
            "TALLYQL_LIVE_QUEUE_SIZE": str(args.queue_size),
        }
        ingest_keys, read_keys = prepare(args, env)
        servers = [start_server(env, workdir, f"server{n}") for n in range(args.replicas)]
        for server, url in servers:
            print(f"server pid {server.pid} on {url}; database {database_url.split('@')[-1]}")
        asyncio.run(run(args, servers, ingest_keys, read_keys))
    finally:
        if scratch:
            asyncio.run(admin(args.database_url, f'DROP DATABASE "{scratch}" WITH (FORCE)'))
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
