"""The hand-off between a WebSocket transport's fast path and the `events` resolver.

A transport that delivers live items itself sets `LIVE_SINK` in the operation's task before
running the operation through strawberry (parsing, validation, limits, authentication and the
resolver's own argument checks all happen as usual). The resolver then attaches its item
stream to the sink instead of yielding items to strawberry, and the transport renders each
item once per distinct operation and sends the bytes to every subscriber that shares it. A
coalesced subscription also offers `direct`: a WebSocket transport that can write to its
socket itself hands it an outlet, and the feed's one sender writes every window.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from contextvars import ContextVar

from tallyql.live.batches import Outlet
from tallyql.live.subscriber import Item

RunOutlet = Callable[[Outlet], Awaitable[None]]


class LiveSink:
    def __init__(self) -> None:
        self.stream: AsyncGenerator[Item, None] | None = None
        self.direct: RunOutlet | None = None
        """For a coalesced subscription: runs it with its windows written to an outlet by
        the feed's sender, in place of `stream`, when the transport can give one."""

    def attach(self, stream: AsyncGenerator[Item, None], direct: RunOutlet | None = None) -> None:
        self.stream = stream
        self.direct = direct


LIVE_SINK: ContextVar[LiveSink | None] = ContextVar("tallyql_live_sink", default=None)

__all__ = ["LIVE_SINK", "LiveSink"]
