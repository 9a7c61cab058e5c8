"""A real PostgreSQL hot standby of the test server, for tests/test_read_replicas.py.

`pg_basebackup -R -X stream` copies the test server (the whole cluster: a few tens of MB) into
a temporary directory owned by the `postgres` user, and `pg_ctl` starts it on a free port as a
streaming standby. The primary's pg_hba.conf must allow `host replication all 127.0.0.1/32
trust` (.ci/run adds it). PostgreSQL refuses to run as root, so when the tests run as root
the binaries run as `postgres` (runuser). The standby stops and its directory goes at the end
of the session, whatever happened."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg

BIN = Path(os.environ.get("TALLYQL_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres(args: list[str]) -> list[str]:
    """The command, run as the postgres user when we are root."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@dataclass
class Standby:
    """A running standby: its directory, port, and the URL of a database on it."""

    root: Path
    port: int
    primary_url: str
    slot: str
    """The physical replication slot on the primary that keeps the WAL the standby needs (a
    busy shared server recycles segments between the base backup and the standby's start)."""

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database_url: str) -> str:
        """`database_url` (a database of the primary) on this standby."""
        parts = urlsplit(database_url)
        return f"postgresql://postgres@127.0.0.1:{self.port}{parts.path}"

    def pg_ctl(self, *args: str) -> None:
        subprocess.run(
            _as_postgres([str(BIN / "pg_ctl"), "-D", str(self.data), *args]),
            check=True,
            capture_output=True,
            timeout=320,
        )

    def start(self) -> None:
        """Start it and wait until it accepts connections: a restart replays the WAL since the
        last restartpoint first (seconds here, more while the shared server is busy)."""
        self.pg_ctl("-l", str(self.root / "log"), "-w", "-t", "300", "start")

    def stop(self) -> None:
        self.pg_ctl("-m", "fast", "-w", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()


def make_standby(primary_url: str) -> Standby:
    """Copy the primary and start it as a standby; raises with PostgreSQL's words if not."""
    parts = urlsplit(primary_url)
    root = Path(tempfile.mkdtemp(prefix="tallyql-standby-"))
    try:
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(root, user.pw_uid, user.pw_gid)
        os.chmod(root, 0o700)
        drop_stale_slots(primary_url)
        slot = f"{SLOT_PREFIX}{os.getpid()}_{uuid.uuid4().hex[:6]}"
        standby = Standby(root, _free_port(), primary_url, slot)
        backup = [
            str(BIN / "pg_basebackup"),
            *("-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 5432)),
            *("-U", parts.username or "postgres", "-D", str(standby.data)),
            *("-R", "-X", "stream", "-c", "fast", "-C", "-S", slot),
        ]
        for _attempt in range(3):  # a shared server may end a replication connection
            done = subprocess.run(_as_postgres(backup), capture_output=True, text=True, timeout=900)
            if done.returncode == 0:
                break
            shutil.rmtree(standby.data, ignore_errors=True)
            _sql(
                primary_url,
                f"SELECT pg_drop_replication_slot('{slot}') FROM pg_replication_slots"
                f" WHERE slot_name = '{slot}'",
            )
            time.sleep(1)
        if done.returncode != 0:
            raise RuntimeError(
                f"pg_basebackup failed (does pg_hba.conf allow `host replication all "
                f"127.0.0.1/32 trust`? .ci/run adds it): {done.stderr.strip()}"
            )
        # Debian keeps the configuration outside the data directory: the standby gets its own,
        # with the primary's limits that a hot standby must match or exceed
        (standby.data / "postgresql.conf").write_text(
            f"port = {standby.port}\n"
            "listen_addresses = '127.0.0.1'\n"
            f"unix_socket_directories = '{root}'\n"
            "hot_standby = on\n"
            "max_connections = 100\n"
            "shared_buffers = 128MB\n"
            "fsync = off\n"
            "logging_collector = off\n"
        )
        (standby.data / "pg_hba.conf").write_text(
            "local all all trust\nhost all all 127.0.0.1/32 trust\n"
        )
        if os.geteuid() == 0:
            for name in ("postgresql.conf", "pg_hba.conf"):
                shutil.chown(standby.data / name, "postgres", "postgres")
        standby.start()
        return standby
    except BaseException:
        remove(standby if "standby" in locals() else None, root)
        raise


SLOT_PREFIX = "tallyql_test_standby_"


def _sql(url: str, sql: str) -> str:
    done = subprocess.run(["psql", url, "-Atc", sql], capture_output=True, text=True, timeout=30)
    return done.stdout


def drop_stale_slots(primary_url: str) -> None:
    """Slots of standbys whose test process died without cleaning up keep WAL on the primary
    forever: drop the inactive ones of processes that no longer run."""
    found = _sql(
        primary_url,
        f"SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE '{SLOT_PREFIX}%'"
        " AND NOT active",
    )
    for name in found.split():
        pid = int(name[len(SLOT_PREFIX) :].split("_")[0])
        if not Path(f"/proc/{pid}").exists():
            _sql(primary_url, f"SELECT pg_drop_replication_slot('{name}')")


def remove(standby: Standby | None, root: Path | None = None) -> None:
    """Stop the standby if it runs, drop its slot, and delete its directory."""
    root = standby.root if standby is not None else root
    assert root is not None
    data = root / "data"
    if (data / "postmaster.pid").exists():
        subprocess.run(
            _as_postgres([str(BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
            capture_output=True,
            timeout=60,
        )
    if os.environ.get("TALLYQL_TEST_STANDBY_LOG") and (root / "log").exists():
        shutil.copy(root / "log", os.environ["TALLYQL_TEST_STANDBY_LOG"])
    shutil.rmtree(root, ignore_errors=True)
    if standby is not None:
        # the walsender ends moments after the standby: the slot can go once it is inactive
        sql = (
            f"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
            f" WHERE slot_name = '{standby.slot}' AND NOT active"
        )
        for _ in range(50):
            _sql(standby.primary_url, sql)
            left = _sql(
                standby.primary_url,
                f"SELECT 1 FROM pg_replication_slots WHERE slot_name = '{standby.slot}'",
            )
            if not left.strip():
                break
            time.sleep(0.1)


async def wait_caught_up(url: str, primary_url: str, seconds: float = 120.0) -> float:
    """Seconds until the standby has replayed what the primary had written when asked (the
    whole cluster's WAL: other databases' traffic included)."""
    started = time.monotonic()
    primary = await asyncpg.connect(primary_url)
    try:
        target = await primary.fetchval("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")
    finally:
        await primary.close()
    conn = await asyncpg.connect(url)
    try:
        while time.monotonic() - started < seconds:
            at = await conn.fetchval("SELECT pg_last_wal_replay_lsn() - '0/0'::pg_lsn")
            if at is not None and at >= target:
                return time.monotonic() - started
            await asyncio.sleep(0.05)
    finally:
        await conn.close()
    raise RuntimeError(f"the standby did not catch up within {seconds} s")


async def wait_streaming(url: str, seconds: float = 30.0) -> float:
    """Seconds until the standby at `url` accepts connections and streams from the primary."""
    started = time.monotonic()
    last: Exception | None = None
    while time.monotonic() - started < seconds:
        try:
            conn = await asyncpg.connect(url, timeout=1.0)
            try:
                status = await conn.fetchval("SELECT status FROM pg_stat_wal_receiver")
            finally:
                await conn.close()
            if status == "streaming":
                return time.monotonic() - started
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            last = exc
        await asyncio.sleep(0.05)
    raise RuntimeError(f"the standby did not stream within {seconds} s: {last}")
