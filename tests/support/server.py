"""Runs `tallyql` as a real process: the CLI, and `tallyql serve` on a free port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

from tests.conftest import _TRAVELLER, POSTGRES_URL, _reset_postgres

ROOT = Path(__file__).resolve().parents[2]


def tallyql_argv(*args: str) -> list[str]:
    """The command line of `tallyql ARGS`; while the session runs at a set hour (--clock), the
    process starts at the tests' current time too (tests/support/clocked.py)."""
    if _TRAVELLER:
        moment = datetime.now(UTC).isoformat()
        return [sys.executable, "-m", "tests.support.clocked", moment, *args]
    return [sys.executable, "-m", "tallyql", *args]


def _env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


def cli(*args: str, data_dir: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`tallyql ARGS` in a subprocess; raises with its output when it fails."""
    env = _env(TALLYQL_DATA_DIR=str(data_dir))
    done = subprocess.run(
        tallyql_argv(*args),
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise AssertionError(f"tallyql {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done


def create_key(database_url: str, data_dir: Path, role: str = "ingest") -> str:
    done = cli(
        "keys",
        "create",
        "--workspace",
        "acme",
        "--role",
        role,
        "--database-url",
        database_url,
        data_dir=data_dir,
    )
    return done.stdout.strip().splitlines()[-1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def reset_database(database_url: str) -> None:
    if database_url.startswith("postgresql"):
        await _reset_postgres(database_url)


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no flushing."""
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


def start_server(
    database_url: str,
    data_dir: Path,
    name: str = "server",
    extra_env: dict[str, str] | None = None,
) -> Server:
    """`tallyql serve` on a free port; `extra_env` sets more TALLYQL_* variables."""
    port = free_port()
    log = data_dir / f"{name}.log"
    env = _env(TALLYQL_DATA_DIR=str(data_dir), TALLYQL_LOG_LEVEL="warning")
    env.update(extra_env or {})
    with log.open("wb") as out:
        process = subprocess.Popen(
            tallyql_argv("serve", "--port", str(port), "--database-url", database_url),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    server = Server(process, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited: {log.read_text()}")
        try:
            if httpx.get(f"{server.url}/health", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.stop()
    raise AssertionError(f"server did not start: {log.read_text()}")


__all__ = ["POSTGRES_URL", "Server", "cli", "create_key", "reset_database", "start_server"]
