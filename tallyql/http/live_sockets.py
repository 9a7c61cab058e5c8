"""Writing a coalesced subscription's windows straight to its WebSocket (live/batches.py's
`Outlet`).

Profiling the server with 1,000 subscribers of one workspace (bench/live.py, py-spy) put half
the process's time in delivering windows one subscriber at a time: a task per subscriber
woken per window, a pacer turn each, and a `send_text` through Starlette and uvicorn that
encodes the text to UTF-8, builds a frame and joins it again for every socket, then
`transport.write`. A server's WebSocket frames are not masked, so without compression
(`tallyql serve` turns permessage-deflate off) a message's whole frame is the same bytes for
every socket: `frame()` builds it once, and an outlet writes those bytes to the socket's
transport itself. Only sockets served by uvicorn's sans-I/O websockets protocol without
extensions are written this way (`socket_outlet` returns None otherwise, and the subscription
takes the per-subscriber path); the ASGI `send` of that protocol is captured in the scope by
`CaptureSocket`, the outermost middleware.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from tallyql.live.batches import BATCH, EventWindow
from tallyql.live.subscriber import LAGGED
from tallyql.schema.live_render import Renderer

SCOPE_KEY = "tallyql.socket"
OP_TEXT = 0x1


class CaptureSocket:
    """Keeps the server protocol behind a WebSocket connection in its scope (`SCOPE_KEY`):
    the ASGI `send` that reaches the outermost middleware is the protocol's own method."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            scope[SCOPE_KEY] = getattr(send, "__self__", None)
        await self.app(scope, receive, send)


def frame(payload: bytes) -> bytes:
    """An unmasked, final text frame holding `payload` (RFC 6455 §5.2)."""
    size = len(payload)
    if size < 126:
        header = bytes((0x80 | OP_TEXT, size))
    elif size < 1 << 16:
        header = bytes((0x80 | OP_TEXT, 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((0x80 | OP_TEXT, 127)) + size.to_bytes(8, "big")
    return header + payload


def _writable_protocol(scope: Scope) -> Any | None:
    """The socket's uvicorn protocol when frames may be written to its transport directly."""
    protocol = scope.get(SCOPE_KEY)
    if protocol is None or type(protocol).__name__ != "WebSocketsSansIOProtocol":
        return None
    conn = getattr(protocol, "conn", None)
    if conn is None or getattr(conn, "extensions", None) or protocol.transport is None:
        return None  # an extension (compression) makes each socket's bytes its own
    return protocol


class SocketOutlet:
    """One subscription's socket: its windows rendered by the operation's renderer inside the
    transport's envelope (`head` and `tail` hold the operation id)."""

    __slots__ = ("_alive", "_protocol", "_renderer", "group", "head", "tail")

    def __init__(
        self,
        protocol: Any,
        renderer: Renderer,
        renderer_key: bytes,
        head: str,
        tail: str,
        alive: Callable[[], bool],
    ) -> None:
        self._protocol = protocol
        self._renderer = renderer
        self._alive = alive
        self.head = head
        self.tail = tail
        self.group: Hashable = (renderer_key, head, tail)

    def alive(self) -> bool:
        protocol = self._protocol
        return (
            self._alive()
            and not protocol.close_sent
            and not protocol.disconnected
            and not protocol.transport.is_closing()
        )

    def buffered(self) -> int:
        return int(self._protocol.transport.get_write_buffer_size())

    def encode(self, window: EventWindow) -> bytes:
        return frame(self._renderer.frame(BATCH, window, self.head, self.tail).encode())

    def encode_lagged(self, count: int) -> bytes:
        return frame(self._renderer.frame(LAGGED, count, self.head, self.tail).encode())

    def write(self, data: bytes) -> None:
        self._protocol.transport.write(data)


def socket_outlet(
    scope: Scope,
    renderer: Renderer,
    renderer_key: bytes,
    head: str,
    tail: str,
    alive: Callable[[], bool],
) -> SocketOutlet | None:
    """An outlet for a subscription on this socket, or None when the socket cannot be
    written to directly (the subscription then takes the per-subscriber path)."""
    protocol = _writable_protocol(scope)
    if protocol is None:
        return None
    return SocketOutlet(protocol, renderer, renderer_key, head, tail, alive)
