"""Telling a database outage from every other failure, in one place.

While the database is down or restarting, every route fails with whatever its driver raised:
an OSError or ConnectionRefusedError from the socket, asyncpg's "cannot connect now" or "the
connection does not exist", SQLAlchemy's wrappers of them, or a pool timeout while no
connection can be made. Callers turn these into 503 with Retry-After (HTTP) or UNAVAILABLE
(GraphQL): the request may succeed once the database is back, which the pools notice by
themselves (PostgreSQL's pool pings connections before use).

What is *not* an outage: a statement that failed (bad SQL, a constraint, a statement timeout
or cancel), which is the request's own failure.
"""

from __future__ import annotations

import errno
import socket
import sqlite3

import asyncpg
from sqlalchemy import exc as sa_exc

RETRY_AFTER_SECONDS = 2
"""What clients are told to wait: PostgreSQL restarts in a few seconds, and pools retry at
the next checkout."""

UNAVAILABLE_MESSAGE = "the database is unavailable; retry later"
"""What clients are told (never the driver's text, which may name hosts and ports)."""

_ASYNCPG_OUTAGES: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,  # class 08: connection exceptions
    asyncpg.CannotConnectNowError,  # 57P03: starting up or shutting down
    asyncpg.AdminShutdownError,  # 57P01: terminated by an administrator
    asyncpg.CrashShutdownError,  # 57P02
    asyncpg.TooManyConnectionsError,  # 53300
    asyncpg.InvalidCatalogNameError,  # 3D000: the database is gone
)
_SOCKET_ERRNOS = frozenset(
    {
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.ENETDOWN,
        errno.ENOTCONN,
        errno.EPIPE,
        errno.EHOSTDOWN,
    }
)
_INTERFACE_CLOSED = ("connection is closed", "connection was closed", "underlying connection")


class DatabaseUnavailable(Exception):
    """The database cannot be reached now; retrying later may succeed."""


def _is_outage(error: BaseException) -> bool:
    if isinstance(error, (DatabaseUnavailable, ConnectionError, *_ASYNCPG_OUTAGES)):
        return True
    if isinstance(error, sa_exc.TimeoutError):
        return True  # the pool gave no connection in time: none can be made
    if isinstance(error, sa_exc.DBAPIError):
        # a connect failure carries no statement; a lost connection is marked invalidated
        return error.connection_invalidated or error.statement is None
    if isinstance(error, asyncpg.InterfaceError):
        return any(text in str(error) for text in _INTERFACE_CLOSED)
    if isinstance(error, sqlite3.OperationalError):
        return "unable to open database file" in str(error) or "disk I/O error" in str(error)
    if isinstance(error, socket.gaierror):
        return True  # the database's host name does not resolve
    # socket errors only: a TimeoutError (an OSError too) is a request's deadline, and file
    # errors are bugs
    return isinstance(error, OSError) and error.errno in _SOCKET_ERRNOS


def is_database_unavailable(error: BaseException | None) -> bool:
    """True when `error`, or an error it wraps (cause, context, exception group), says the
    database cannot be reached."""
    seen: set[int] = set()
    pending = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if _is_outage(current):
            return True
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        if isinstance(current, sa_exc.DBAPIError) and isinstance(current.orig, BaseException):
            pending.append(current.orig)
        pending.append(current.__cause__)
        if not current.__suppress_context__:
            pending.append(current.__context__)
    return False
