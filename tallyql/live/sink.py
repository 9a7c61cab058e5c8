"""The hand-off between a WebSocket transport's fast path and the `events` resolver.

A transport that delivers live items itself sets `LIVE_SINK` in the operation's task before
running the operation through strawberry (parsing, validation, limits, authentication and the
resolver's own argument checks all happen as usual). The resolver then attaches its item
stream to the sink instead of yielding items to strawberry, and the transport renders each
item once per distinct operation and sends the bytes to every subscriber that shares it.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextvars import ContextVar

from tallyql.live.subscriber import Item


class LiveSink:
    def __init__(self) -> None:
        self.stream: AsyncGenerator[Item, None] | None = None

    def attach(self, stream: AsyncGenerator[Item, None]) -> None:
        self.stream = stream


LIVE_SINK: ContextVar[LiveSink | None] = ContextVar("tallyql_live_sink", default=None)

__all__ = ["LIVE_SINK", "LiveSink"]
