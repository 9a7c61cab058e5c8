"""GraphQL overhead: a trivial authenticated query against a plain FastAPI route, one process.

    python bench/overhead.py                       # SQLite in a temporary directory
    python bench/overhead.py --database-url postgresql://postgres@127.0.0.1:5432/tallyql_ovh

Starts one server process: tallyql's own app (create_app, every middleware, the same GC
tuning as `tallyql serve`, uvicorn on uvloop with httptools) with one extra route,
POST /bench/plain, a plain FastAPI route that returns the same JSON as the GraphQL answer.
Then, in alternating rounds of `--seconds` each, `--connections` keep-alive connections send
POST /graphql `{ me { workspace role } }` with an API key, or POST /bench/plain with the
same body, as fast as the answers come. It prints requests per second of each, the ratio,
and the server's CPU time per request (from /proc: less sensitive to other load on the
machine than requests per second). The client is a minimal HTTP/1.1 client on raw sockets,
so that it costs the server's core as little as possible.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from starlette.requests import Request
from support import cpu_seconds, free_port, tallyql  # bench/ is the script's directory

QUERY = "{ me { workspace role } }"
PLAIN_PATH = "/bench/plain"


def serve(port: int, answer_file: str) -> None:
    """The server process: tallyql's app plus the plain route (answer read from a file)."""
    import uvicorn

    from tallyql.app import create_app
    from tallyql.cli import tune_gc
    from tallyql.config import load_settings

    app = create_app(load_settings())
    answer: dict[str, object] = {}

    @app.post(PLAIN_PATH)
    async def plain(request: Request) -> dict[str, object]:
        await request.body()  # as GraphQL does: the body is read
        if not answer:  # the bench writes the GraphQL answer before the first plain request
            answer.update(json.loads(await asyncio.to_thread(Path(answer_file).read_text)))
        return answer

    tune_gc()
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
    )


def request_bytes(path: str, body: bytes, key: str) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {key}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.lower() == "content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def one(port: int, raw: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    answer = await read_response(reader)
    writer.close()
    return answer


async def hammer(port: int, raw: bytes, connections: int, seconds: float) -> tuple[int, int]:
    """(answers, errors) from `connections` keep-alive connections over `seconds`."""
    stop = time.perf_counter() + seconds
    counts = [0, 0]

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < stop:
                writer.write(raw)
                status, _ = await read_response(reader)
                counts[0 if status == 200 else 1] += 1
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))
    return counts[0], counts[1]


async def measure(args: argparse.Namespace, port: int, pid: int, key: str) -> None:
    gql = request_bytes("/graphql", json.dumps({"query": QUERY}).encode(), key)
    plain = request_bytes(PLAIN_PATH, json.dumps({"query": QUERY}).encode(), key)
    for raw in (gql, plain):  # warm up both (caches, JIT-free but lazy imports)
        await hammer(port, raw, args.connections, 1.0)
    rates: dict[str, list[float]] = {"graphql": [], "plain": []}
    cpu: dict[str, list[float]] = {"graphql": [], "plain": []}
    errors = {"graphql": 0, "plain": 0}
    status, body = await one(port, plain)
    if status != 200:
        raise SystemExit(f"the plain route failed: {status} {body!r}")
    for round_ in range(args.rounds):
        order = [("graphql", gql), ("plain", plain)]
        if round_ % 2:
            order.reverse()  # alternate which goes first
        for name, raw in order:
            cpu_before, started = cpu_seconds(pid), time.perf_counter()
            done, failed = await hammer(port, raw, args.connections, args.seconds)
            elapsed = time.perf_counter() - started
            rates[name].append(done / elapsed)
            cpu[name].append((cpu_seconds(pid) - cpu_before) / max(1, done + failed) * 1e6)
            errors[name] += failed
    print(f"load average before: {args.load_before}; after: {os.getloadavg()}")
    print(f"{'route':<10} {'req/s median':>13} {'req/s rounds':<40} {'server CPU us/req':>18}")
    for name in ("plain", "graphql"):
        rounds = " ".join(f"{r:.0f}" for r in rates[name])
        print(
            f"{name:<10} {statistics.median(rates[name]):>13.0f} {rounds:<40} "
            f"{statistics.median(cpu[name]):>18.0f}"
        )
    ratio = statistics.median(rates["graphql"]) / statistics.median(rates["plain"])
    cpu_ratio = statistics.median(cpu["plain"]) / statistics.median(cpu["graphql"])
    print(f"errors: graphql {errors['graphql']}, plain {errors['plain']}")
    print(f"ratio graphql/plain, requests per second: {ratio:.0%}")
    print(f"ratio graphql/plain, by server CPU per request: {cpu_ratio:.0%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temp dir")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--serve", nargs=2, metavar=("PORT", "ANSWER_FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(int(args.serve[0]), args.serve[1])
        return
    args.load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="tallyql-overhead-") as tmp:
        url = args.database_url or f"sqlite:///{tmp}/overhead.db"
        env = {
            **os.environ,
            "TALLYQL_DATABASE_URL": url,
            "TALLYQL_LOG_LEVEL": "warning",
            # the bench asks far more than a key's default budget per minute allows
            "TALLYQL_COST_KEY_LIMIT_PER_MINUTE": "1000000000",
        }
        out = tallyql("keys", "create", "--workspace", "overhead", "--role", "viewer", env=env)
        key = out.strip().splitlines()[-1]
        answer_file = Path(tmp) / "answer.json"
        port = free_port()
        script = str(Path(__file__).resolve())
        process = subprocess.Popen(
            [sys.executable, script, "--serve", str(port), str(answer_file)], env=env
        )
        try:
            asyncio.run(wait_and_measure(args, port, process, key, answer_file))
        finally:
            process.terminate()
            process.wait(timeout=30)


async def wait_and_measure(
    args: argparse.Namespace,
    port: int,
    process: subprocess.Popen[bytes],
    key: str,
    answer_file: Path,
) -> None:
    gql = request_bytes("/graphql", json.dumps({"query": QUERY}).encode(), key)
    for _ in range(300):
        try:
            status, body = await one(port, gql)
            break
        except OSError:
            await asyncio.sleep(0.2)
    else:
        raise SystemExit("server did not start")
    if status != 200 or b"errors" in body:
        raise SystemExit(f"the trivial query failed: {status} {body!r}")
    # the plain route answers exactly this (it reads the file at its first request)
    await asyncio.to_thread(answer_file.write_bytes, body)
    print(f"answer: {body.decode()}")
    await measure(args, port, process.pid, key)


if __name__ == "__main__":
    main()
