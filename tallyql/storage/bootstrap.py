"""First run on PostgreSQL: make sure the configured database exists before migrating.

A newcomer points `serve` or `migrate` at a database that does not exist yet. When the role may
create databases, it is created (from the `postgres` maintenance database); otherwise, and when
the server cannot be reached, the command stops with one line that says what to do, never a
traceback.
"""

from __future__ import annotations

import asyncpg
from sqlalchemy.engine import make_url

from tallyql.config import normalize_database_url

CONNECT_TIMEOUT_SECONDS = 10.0


class DatabaseSetupError(Exception):
    """The database cannot be used; the message is one line for the operator."""


def _plain_dsn(url: str, database: str | None = None) -> tuple[str, str]:
    """asyncpg's DSN for `url` (optionally another database of the same server), and the name
    of the database the URL names."""
    parsed = make_url(normalize_database_url(url))
    name = parsed.database or "postgres"
    target = parsed.set(drivername="postgresql", database=database or name)
    return target.render_as_string(hide_password=False), name


def _where(url: str) -> str:
    parsed = make_url(normalize_database_url(url))
    return f"{parsed.host or 'localhost'}:{parsed.port or 5432}"


async def ensure_postgres_database(url: str) -> str | None:
    """Create the URL's database when it is missing; a line saying so, or None when it existed.

    DatabaseSetupError when the server cannot be reached, refuses the login, or the role may
    not create the database."""
    dsn, name = _plain_dsn(url)
    try:
        conn = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT_SECONDS)
    except asyncpg.InvalidCatalogNameError:
        pass  # the database is missing: create it below
    except (OSError, TimeoutError) as exc:
        raise DatabaseSetupError(
            f"cannot reach PostgreSQL at {_where(url)} ({exc.__class__.__name__}: {exc}); "
            "is it running, and is TALLYQL_DATABASE_URL right?"
        ) from None
    except asyncpg.PostgresError as exc:
        raise DatabaseSetupError(
            f"PostgreSQL at {_where(url)} refused the connection to database {name!r}: {exc}"
        ) from None
    else:
        await conn.close()
        return None
    maintenance, _ = _plain_dsn(url, "postgres")
    try:
        conn = await asyncpg.connect(maintenance, timeout=CONNECT_TIMEOUT_SECONDS)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        raise DatabaseSetupError(_create_it_yourself(name, url, str(exc))) from None
    try:
        quoted = '"' + name.replace('"', '""') + '"'
        await conn.execute(f"CREATE DATABASE {quoted}")
    except asyncpg.DuplicateDatabaseError:
        return None  # created meanwhile by another process
    except asyncpg.PostgresError as exc:
        raise DatabaseSetupError(_create_it_yourself(name, url, str(exc))) from None
    finally:
        await conn.close()
    return f"created database {name!r} on PostgreSQL at {_where(url)}"


def _create_it_yourself(name: str, url: str, reason: str) -> str:
    parsed = make_url(normalize_database_url(url))
    user = f" -U {parsed.username}" if parsed.username else ""
    host = f" -h {parsed.host}" if parsed.host else ""
    port = f" -p {parsed.port}" if parsed.port else ""
    return (
        f"database {name!r} does not exist on PostgreSQL at {_where(url)} and could not be "
        f"created ({reason}); create it with: createdb{host}{port}{user} {name}"
    )
