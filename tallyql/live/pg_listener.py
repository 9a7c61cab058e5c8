"""One PostgreSQL connection that LISTENs on the live channels, reconnecting when it drops.

Handlers are plain callbacks called with each notification's payload (in the event loop).
`on_connect` hooks run after every (re)connection, e.g. to ask the other replicas to
announce what they are subscribed to.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import asyncpg

log = logging.getLogger(__name__)

Handler = Callable[[str], None]
HEALTH_CHECK_SECONDS = 15.0
RECONNECT_SECONDS = 1.0


class PgListener:
    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._handlers: dict[str, Handler] = {}
        self.on_connect: list[Callable[[], Awaitable[None]]] = []
        self.connected = asyncio.Event()
        self.reconnects = 0
        self._conn: asyncpg.Connection | None = None
        self._query_lock = asyncio.Lock()  # one query at a time on the listening connection

    def add(self, channel: str, handler: Handler) -> None:
        self._handlers[channel] = handler

    async def round_trip(self, wait_seconds: float = 2.0) -> None:
        """One query on the listening connection. PostgreSQL sends a session its pending
        notifications before it answers, so when this returns the handlers have been called
        for every notification of a transaction committed before the call."""
        conn = self._conn
        if conn is None:
            return
        try:
            async with asyncio.timeout(wait_seconds), self._query_lock:
                await conn.execute("SELECT 1")
        except Exception as exc:  # the session loop reconnects; the caller goes on
            log.warning("live LISTEN round trip failed (%s)", exc)
        await asyncio.sleep(0)  # asyncpg calls the listeners soon, not inline

    async def run(self) -> None:
        while True:
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("live LISTEN connection lost (%s); reconnecting", exc)
            self.connected.clear()
            self.reconnects += 1
            await asyncio.sleep(RECONNECT_SECONDS)

    async def _session(self) -> None:
        conn = await asyncpg.connect(self._dsn)
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        try:
            for channel, handler in self._handlers.items():
                await conn.add_listener(channel, self._callback(handler))
            self._conn = conn
            self.connected.set()
            for hook in self.on_connect:
                await hook()
            while not lost.is_set():
                try:
                    async with asyncio.timeout(HEALTH_CHECK_SECONDS):
                        await lost.wait()
                except TimeoutError:
                    async with asyncio.timeout(HEALTH_CHECK_SECONDS), self._query_lock:
                        await conn.execute("SELECT 1")
            raise ConnectionError("connection closed")
        finally:
            self._conn = None
            if not conn.is_closed():
                await conn.close(timeout=5)

    @staticmethod
    def _callback(handler: Handler) -> Callable[..., None]:
        def on_notification(_conn: object, _pid: int, _channel: str, payload: str) -> None:
            try:
                handler(payload)
            except Exception:
                log.exception("live notification handler failed")

        return on_notification
