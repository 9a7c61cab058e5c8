"""What bounds one request's reads: its workspace's share of the read connections, its
deadline, and the statement timeout (set on the connections by storage/database.py).

The request (a GraphQL operation) names its tenant and deadline once, in context variables
(schema/base/limits.py sets them), rather than through every engine function's arguments: every
read of the engine goes through `Database.read()` or `read_snapshot()`, which consult them.
Tasks started by the request (asyncio.gather) inherit them. Reads outside a request (jobs,
REST exports, ingest) have neither and are bounded by the statement timeout alone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager
from contextvars import ContextVar

TENANT: ContextVar[Hashable | None] = ContextVar("tallyql_read_tenant", default=None)
"""Whose share of the read connections this task's reads take (a workspace id, or the
operator's scope); None: no share is taken."""
DEADLINE: ContextVar[float | None] = ContextVar("tallyql_read_deadline", default=None)
"""time.monotonic() after which this task's request starts no new statement."""
_HOLDING: ContextVar[bool] = ContextVar("tallyql_read_holding", default=False)
"""Set while a task (or a task it started) holds a share: a read nested in another one takes
no second share, so that nested reads cannot wait on each other."""


class DeadlineExceeded(Exception):
    """The request ran past its deadline (TALLYQL_REQUEST_DEADLINE_SECONDS)."""

    code = "DEADLINE_EXCEEDED"


class StatementTimeout(Exception):
    """A read statement ran longer than TALLYQL_DB_STATEMENT_TIMEOUT_SECONDS and was
    cancelled by the database."""

    code = "QUERY_TIMEOUT"


def remaining() -> float | None:
    """Seconds left before this task's request deadline (None: no deadline)."""
    deadline = DEADLINE.get()
    return None if deadline is None else deadline - time.monotonic()


def check_deadline() -> None:
    left = remaining()
    if left is not None and left <= 0:
        raise DeadlineExceeded("the request ran past its deadline; ask for less at once")


class _Share:
    def __init__(self, size: int) -> None:
        self.semaphore = asyncio.Semaphore(size)
        self.users = 0  # holding or waiting
        self.held = 0


class TenantShares:
    """At most `per_tenant` read connections held at once by each tenant's requests; the
    others wait (in arrival order) within their deadline. A share exists while in use."""

    def __init__(self, per_tenant: int) -> None:
        self.per_tenant = max(1, per_tenant)
        self._shares: dict[Hashable, _Share] = {}
        self.waits = 0
        """Times a read waited for its tenant's share (tests read it)."""
        self.peak: dict[Hashable, int] = {}
        """The most connections each tenant held at once (tests read it)."""

    def held(self, tenant: Hashable) -> int:
        share = self._shares.get(tenant)
        return 0 if share is None else share.held

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        tenant = TENANT.get()
        check_deadline()
        if tenant is None or _HOLDING.get():
            yield
            return
        share = self._shares.get(tenant)
        if share is None:
            share = self._shares[tenant] = _Share(self.per_tenant)
        share.users += 1
        try:
            if share.semaphore.locked():
                self.waits += 1
            try:
                async with asyncio.timeout(remaining()):
                    await share.semaphore.acquire()
            except TimeoutError:
                raise DeadlineExceeded(
                    "the request ran past its deadline waiting for its workspace's share of "
                    "the database connections"
                ) from None
            share.held += 1
            if share.held > self.peak.get(tenant, 0):
                self.peak[tenant] = share.held
            token = _HOLDING.set(True)
            try:
                yield
            finally:
                _HOLDING.reset(token)
                share.held -= 1
                share.semaphore.release()
        finally:
            share.users -= 1
            if share.users == 0:
                self._shares.pop(tenant, None)


def is_statement_timeout(error: BaseException) -> bool:
    """Whether a driver error is the database cancelling a statement for its time: SQLSTATE
    57014 on PostgreSQL, an interrupted statement on SQLite (the progress handler)."""
    orig = getattr(error, "orig", None)
    if getattr(orig, "sqlstate", None) == "57014":
        return True
    return "interrupted" in str(orig or "").lower()
