"""The server's own health, kept in the shared database so that whichever process evaluates a
health alert rule sees every replica: one heartbeat row per running `tallyql serve` process
(its writer's backlog and last commit, the jobs /health calls degraded). Compaction's
progress needs no row: each staged rollup row carries its `staged_at` (migration
0022_delta_staged_at).

Migration 0023_server_health creates it. It belongs to the server, not to a workspace: no
`workspace_id`.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Integer, Table, Text

from tallyql.storage.tables import metadata
from tallyql.storage.types import JsonValue, UtcDateTime

server_heartbeats = Table(
    "server_heartbeats",
    metadata,
    Column("instance_id", Text, primary_key=True),  # random per process start
    Column("host", Text, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", UtcDateTime(), nullable=False),
    Column("heartbeat_at", UtcDateTime(), nullable=False),
    # events accepted by the writer and not yet committed (queued or in a batch in flight)
    Column("writer_pending_events", BigInteger, nullable=False),
    Column("writer_oldest_pending_at", UtcDateTime()),  # null: nothing pending
    Column("writer_last_commit_at", UtcDateTime()),  # null: no batch committed yet
    Column("writer_events_committed", BigInteger, nullable=False),
    Column("degraded", JsonValue(), nullable=False),  # the /health reasons of its jobs
)
