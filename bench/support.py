"""What the benchmark scripts share: free ports, the CLI in a subprocess, a PostgreSQL admin
statement, a process's RSS and peak RSS, and demo events prepared for the writer."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import asyncpg
import orjson

from tallyql.demo.generator import generate_batches
from tallyql.ingest import fastpath
from tallyql.ingest.pricing import Pricer
from tallyql.ingest.service import IngestService
from tallyql.storage.ingest.record import ValidEvent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tallyql(*args: str, env: dict[str, str]) -> str:
    """`tallyql ARGS` in a subprocess; exits with its output when it fails."""
    done = subprocess.run(
        [sys.executable, "-m", "tallyql", *args], capture_output=True, text=True, env=env
    )
    if done.returncode != 0:
        raise SystemExit(f"tallyql {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


async def admin(url: str, sql: str) -> None:
    """One statement on its own connection (CREATE / DROP DATABASE)."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds used so far by a process (all its threads), from
    /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds used so far by a process (all its threads)."""
    return sum(cpu_split(pid))


def _status_mib(pid: int, field: str) -> float:
    """A memory figure of /proc/PID/status (kB there), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mib(pid: int) -> float:
    """A process's peak resident memory (VmHWM), in MiB."""
    return _status_mib(pid, "VmHWM")


def rss_mib(pid: int) -> float:
    """A process's resident memory now (VmRSS), in MiB."""
    return _status_mib(pid, "VmRSS")


def prepared_demo_events(workspace_id: int, count: int, days: float, seed: int) -> list[ValidEvent]:
    """`count` demo events over `days`, decoded, validated and priced as ingest does, ready for
    the writer's database side (storage/ingest/batch.py)."""
    service = IngestService(None, Pricer())  # type: ignore[arg-type]
    events: list[ValidEvent] = []
    for batch in generate_batches(count, days, seed=seed, batch_size=1000):
        structs = fastpath.decode_body(orjson.dumps(batch), False)
        events += service.prepare_fast(workspace_id, structs, history=True)
    return events
