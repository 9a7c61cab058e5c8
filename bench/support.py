"""What the benchmark scripts share: free ports, the CLI in a subprocess, a PostgreSQL admin
statement and a process's peak RSS."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import asyncpg


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


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")
