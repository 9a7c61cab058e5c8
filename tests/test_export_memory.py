"""Exporting a million rows streams from the database: the server's memory stays flat.

The rows go straight into the events table (SQL, not the ingest path, to keep the test quick);
a running `tallyql serve` exports them as CSV while the test samples its resident memory."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy import text

from tallyql.storage.database import Database
from tallyql.storage.dialect import Dialect
from tallyql.storage.ingest.partitions import PartitionManager
from tallyql.storage.types import to_micros
from tests.support.helpers import iso
from tests.support.server import create_key, reset_database, start_server

ROWS = 1_000_000
MAX_GROWTH_MB = 50
DAY = (datetime.now(UTC) - timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
COLUMNS = (
    "workspace_id, id, ts, kind, status, provider, model, user_id, is_byok, input_tokens, "
    "output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens, cost_nanousd, "
    "cost_source, has_payload, tags, metadata, received_at"
)


async def _fill(database_url: str) -> None:
    db = Database(database_url)
    try:
        async with db.read() as conn:
            ws = (
                await conn.execute(text("SELECT id FROM workspaces WHERE name = 'acme'"))
            ).scalar()
        if db.dialect is Dialect.POSTGRESQL:
            conn_pg = await asyncpg.connect(db.asyncpg_dsn)
            try:
                await PartitionManager().ensure(conn_pg, {DAY.date()})
                await conn_pg.execute(
                    f"INSERT INTO events ({COLUMNS}) SELECT $1, 'e' || x, "
                    "$2::timestamptz + x * interval '50 milliseconds', 'llm_call', 'success', "
                    "'openai', 'gpt-4o-mini', 'u' || (x % 100), false, x % 5000, x % 500, 0, 0, 0, "
                    "x * 7, 'computed', false, ARRAY['t']::text[], '{\"env\": \"prod\"}'::jsonb, "
                    "$2::timestamptz FROM generate_series(0, $3 - 1) AS x",
                    ws,
                    DAY,
                    ROWS,
                )
            finally:
                await conn_pg.close()
            return
        start = to_micros(DAY)
        async with db.write() as conn:
            await conn.execute(
                text(
                    f"INSERT INTO events ({COLUMNS}) WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL "
                    "SELECT x + 1 FROM c WHERE x < :n - 1) SELECT :ws, 'e' || x, :t0 + x * 50000, "
                    "'llm_call', 'success', 'openai', 'gpt-4o-mini', 'u' || (x % 100), 0, "
                    "x % 5000, x % 500, 0, 0, 0, x * 7, 'computed', 0, '[\"t\"]', "
                    '\'{"env": "prod"}\', :t0 FROM c'
                ),
                {"n": ROWS, "ws": ws, "t0": start},
            )
    finally:
        await db.dispose()


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_a_million_rows_stream_in_flat_memory(database_url: str, tmp_path: Path) -> None:
    asyncio.run(reset_database(database_url))
    key = create_key(database_url, tmp_path, role="viewer")
    asyncio.run(_fill(database_url))
    server = start_server(database_url, tmp_path)
    headers = {"Authorization": f"Bearer {key}"}
    window = {"start": iso(DAY), "end": iso(DAY + timedelta(days=1)), "format": "csv"}
    try:
        with httpx.Client(base_url=server.url, headers=headers, timeout=600) as client:
            warm = client.get("/v1/export/requests", params={**window, "models": "none"})
            assert warm.status_code == 200 and warm.text.count("\n") == 1
            baseline = peak = _rss_mb(server.process.pid)
            lines = 0
            received = 0
            started = time.perf_counter()
            with client.stream("GET", "/v1/export/requests", params=window) as response:
                assert response.status_code == 200
                next_sample = 0
                for chunk in response.iter_bytes():
                    lines += chunk.count(b"\n")
                    received += len(chunk)
                    if received >= next_sample:
                        peak = max(peak, _rss_mb(server.process.pid))
                        next_sample = received + 4_000_000
            seconds = time.perf_counter() - started
            peak = max(peak, _rss_mb(server.process.pid))
    finally:
        server.stop()
    growth = peak - baseline
    print(
        f"\nexport of {ROWS:,} rows ({received / 1e6:.0f} MB CSV) in {seconds:.1f} s "
        f"({ROWS / seconds:,.0f} rows/s); server RSS {baseline:.0f} MB -> peak {peak:.0f} MB "
        f"(growth {growth:.1f} MB)"
    )
    assert lines == ROWS + 1  # the header, then one line per row
    assert growth < MAX_GROWTH_MB
