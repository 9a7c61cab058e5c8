"""Applies the alembic migrations in `storage/migrations` to a database."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection

from tallyql.storage.database import Database
from tallyql.storage.locks import Lock, hold

MIGRATIONS = Path(__file__).parent / "migrations"


def _config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def _upgrade(connection: Connection, revision: str) -> None:
    command.upgrade(_config(connection), revision)


def _current(connection: Connection) -> str | None:

    heads = MigrationContext.configure(connection).get_current_heads()
    return ",".join(sorted(heads)) or None  # features migrate on branches: one head each


async def upgrade(db: Database, revision: str = "heads") -> None:
    """Apply every migration. Features add migrations on their own branches from 0002, so
    the target is all heads."""
    async with db.write() as conn:
        await hold(conn, Lock.MIGRATE)  # replicas starting together migrate once
        await conn.run_sync(_upgrade, revision)


async def current_revision(db: Database) -> str | None:
    async with db.read() as conn:
        return await conn.run_sync(_current)
