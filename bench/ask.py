"""Ask benchmark: interpretation time per question, end-to-end `ask`, chart image renders.

    python bench/ask.py                                   # 100k demo events on SQLite
    python bench/ask.py --database-url postgresql://postgres@127.0.0.1:5432/tallyql_ask

1. The interpreter alone (tallyql/engine/interpret.py), in this process, over every question
   of the test corpus (tests/support/ask_corpus.py), `--rounds` times: p50, p95 and max per
   question.
2. `ask` over HTTP against `tallyql serve` on `--events` demo events (loaded with
   `tallyql demo` unless the workspace holds enough): p50/p95 over the corpus' questions.
3. The first image right after start (the renderer warms up in the background at start),
   then each chart preset: the Vega-Lite spec drawn to PNG and to SVG in this process (drawing
   only), and `GET /v1/charts/{preset}.png` uncached (each request at a new `scale`, so never
   a cache hit: query plus drawing) and cached.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import httpx
import vl_convert
from query import demo_events, ensure_postgres_database, percentile, start_server

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' corpus

from support import tallyql

from tallyql.engine.charts import PRESETS
from tallyql.engine.interpret import KnownValuesKey, interpret
from tests.support.ask_corpus import CASES, KNOWN, NOW

ASK = """query($q: String!) { ask(question: $q) { understood summary
  result { totalRows } chart { kind vegaLite } } }"""
CHART = """query($p: ID) { chart(preset: $p) { vegaLite } }"""


def interpretation(rounds: int) -> None:
    known = KnownValuesKey.of(KNOWN)
    questions = [q for q, _ in CASES]
    for q in questions:
        interpret(q, "UTC", NOW, known)  # the index is built once per set of values
    times = []
    for _ in range(rounds):
        for q in questions:
            started = time.perf_counter()
            interpret(q, "Europe/Paris", NOW, known)
            times.append((time.perf_counter() - started) * 1000)
    print(
        f"interpretation, {len(questions)} questions x {rounds}: p50 "
        f"{statistics.median(times):.3f} ms, p95 {percentile(times, 0.95):.3f} ms, "
        f"max {max(times):.3f} ms",
        flush=True,
    )


def end_to_end(client: httpx.Client, url: str, key: str, rounds: int) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    questions = [q for q, _ in CASES]
    times: list[float] = []
    understood = 0
    for round_ in range(rounds + 1):
        for q in questions:
            started = time.perf_counter()
            body = client.post(
                f"{url}/graphql", json={"query": ASK, "variables": {"q": q}}, headers=headers
            ).json()
            elapsed = (time.perf_counter() - started) * 1000
            if "errors" in body:
                raise SystemExit(f"ask failed for {q!r}: {body['errors']}")
            if round_ > 0:  # the first round warms the known values and plans
                times.append(elapsed)
                understood += body["data"]["ask"]["understood"]
    print(
        f"ask end to end over HTTP, {len(questions)} questions x {rounds}: p50 "
        f"{statistics.median(times):.1f} ms, p95 {percentile(times, 0.95):.1f} ms "
        f"({understood}/{len(times)} understood)",
        flush=True,
    )


def renders(client: httpx.Client, url: str, key: str, rounds: int) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    print(
        f"\n{'preset':<22} {'png draw':>9} {'svg draw':>9} {'GET uncached p50/p95':>21} "
        f"{'GET cached':>11} {'png kB':>7}"
    )
    for name in PRESETS:
        body = client.post(
            f"{url}/graphql", json={"query": CHART, "variables": {"p": name}}, headers=headers
        ).json()
        spec = body["data"]["chart"]["vegaLite"]
        vl_convert.vegalite_to_png(spec)  # warm up
        png = [_timed(lambda s=spec: vl_convert.vegalite_to_png(s)) for _ in range(rounds)]
        svg = [_timed(lambda s=spec: vl_convert.vegalite_to_svg(s)) for _ in range(rounds)]
        uncached = []
        size = 0
        for i in range(rounds):
            started = time.perf_counter()
            response = client.get(
                f"{url}/v1/charts/{name}.png", params={"scale": 1 + (i + 1) / 1000}, headers=headers
            )
            uncached.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200 or response.headers["x-tallyql-cache"] != "miss":
                raise SystemExit(f"{name}: {response.status_code} {response.text[:200]}")
            size = len(response.content)
        cached = []
        for _ in range(rounds):
            started = time.perf_counter()
            client.get(f"{url}/v1/charts/{name}.png", params={"scale": 1}, headers=headers)
            cached.append((time.perf_counter() - started) * 1000)
        print(
            f"{name:<22} {statistics.median(png):>7.1f}ms {statistics.median(svg):>7.1f}ms "
            f"{statistics.median(uncached):>10.1f}/{percentile(uncached, 0.95):>6.1f} ms "
            f"{statistics.median(cached):>8.1f} ms {size / 1024:>7.1f}",
            flush=True,
        )


def first_image(client: httpx.Client, url: str, key: str, settle: float) -> None:
    """The first image after the server is ready: the renderer warms up in a thread at start,
    so this request should not pay vl-convert's first-render cost (about a second)."""
    headers = {"Authorization": f"Bearer {key}"}
    started = time.perf_counter()
    response = client.get(f"{url}/v1/charts/cost-by-model.png", headers=headers)
    first = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    again = client.get(f"{url}/v1/charts/cost-by-model.png", headers=headers)
    cached = (time.perf_counter() - started) * 1000
    print(
        f"\nfirst image {settle:g} s after start: {first:.1f} ms"
        f" ({response.headers.get('x-tallyql-cache')}),"
        f" then {cached:.1f} ms ({again.headers.get('x-tallyql-cache')});"
        f" load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )


def _timed(work: object) -> float:
    started = time.perf_counter()
    work()  # type: ignore[operator]
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="sqlite:////tmp/tallyql-ask-bench.db")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--settle",
        type=float,
        default=0.0,
        help="seconds to wait after the server is ready before the first image (0: at once)",
    )
    args = parser.parse_args()
    interpretation(args.rounds * 4)
    url = args.database_url
    env = {**os.environ, "TALLYQL_DATABASE_URL": url, "TALLYQL_LOG_LEVEL": "warning"}
    ensure_postgres_database(url)
    have = demo_events(url, env)
    if have < args.events:
        print(f"loading {args.events - have:,} demo events over {args.days} days ...", flush=True)
        print(tallyql("demo", "--events", str(args.events), "--days", str(args.days), env=env))
    server = start_server(url, env)
    try:
        with httpx.Client(timeout=120) as client:
            time.sleep(args.settle)
            first_image(client, server.url, server.key, args.settle)
            end_to_end(client, server.url, server.key, args.rounds)
            renders(client, server.url, server.key, args.rounds * 2)
        print(f"\nserver peak RSS: {server.peak_rss_mb():.0f} MB ({args.events:,} events, {url})")
    finally:
        server.process.terminate()
        server.process.wait(timeout=30)


if __name__ == "__main__":
    main()
