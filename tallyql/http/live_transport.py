"""WebSocket handlers (and the SSE stream) that deliver live subscriptions themselves.

Strawberry parses, validates and authorises every operation and runs the resolver; when that
resolver is `Subscription.events`, it hands its item stream to the handler (live/sink.py),
which sends each item as pre-rendered JSON (schema/live_render.py): an item is executed and
encoded once per distinct operation, not once per subscriber. Sending awaits the socket, so
a subscriber that does not read only fills its own bounded queue (and gets a Lagged notice);
nobody else waits for it. A coalesced subscription (`eventBatches`) on a WebSocket skips even
that: its feed's one sender writes each window's frame, built once, to the socket itself
(`deliver_direct`, http/live_sockets.py). GraphQL over SSE takes the per-subscriber path
(`sse_messages`, used by the router), with the same payload text. Everything else
(queries, mutations over WebSocket, errors) takes strawberry's own path.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import Any

import orjson
from graphql import GraphQLError
from starlette.types import Scope
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.subscriptions.protocols.graphql_ws.types import (
    CompleteMessage,
    ConnectionInitMessage,
    ErrorMessage,
)
from strawberry.types.execution import PreExecutionError

from tallyql.http.live_sockets import socket_outlet
from tallyql.live.sink import LIVE_SINK, LiveSink
from tallyql.live.subscriber import Item
from tallyql.schema.base.context import Context
from tallyql.schema.live_render import RENDERERS
from tallyql.storage.outage import (
    UNAVAILABLE_MESSAGE,
    DatabaseUnavailable,
    is_database_unavailable,
)

log = logging.getLogger(__name__)

FORBIDDEN = 4403
TRY_AGAIN_LATER = 1013
"""The close code of a connection refused during a database outage (RFC 6455's registry:
"Try Again Later"); clients reconnect after a while, as they would after a 503."""
TRY_AGAIN_REASON = "Try Again Later"

Send = Callable[[str], Awaitable[None]]


async def deliver(
    schema: Any,
    query: str,
    variables: dict[str, Any] | None,
    operation_name: str | None,
    stream: AsyncGenerator[Item, None],
    head: str,
    tail: str,
    send: Send,
) -> None:
    """Send every item of a live stream, as `head + payload + tail`, until it ends or the
    socket goes away. Subscribers of one operation share each item's message (the renderer
    splices it once per distinct head and tail)."""
    async for text in frames(schema, query, variables, operation_name, stream, head, tail):
        await send(text)


async def frames(
    schema: Any,
    query: str,
    variables: dict[str, Any] | None,
    operation_name: str | None,
    stream: AsyncGenerator[Item, None],
    head: str,
    tail: str,
) -> AsyncIterator[str]:
    """The messages of a live stream's items, rendered once per distinct operation."""
    key, renderer = RENDERERS.acquire(schema._schema, query, variables, operation_name)
    try:
        async with aclosing(stream):
            async for kind, value in stream:  # paced by the stream (live/pacer.py)
                yield renderer.frame(kind, value, head, tail)
    finally:
        RENDERERS.release(key)


async def deliver_direct(
    schema: Any,
    query: str,
    variables: dict[str, Any] | None,
    operation_name: str | None,
    sink: LiveSink,
    scope: Scope,
    head: str,
    tail: str,
    alive: Callable[[], bool],
) -> bool:
    """Run a coalesced subscription with its windows written straight to this socket by its
    feed's sender (http/live_sockets.py), until it is cancelled; False (and nothing done)
    when the subscription or the socket does not allow it."""
    if sink.direct is None or sink.stream is None:
        return False
    key, renderer = RENDERERS.acquire(schema._schema, query, variables, operation_name)
    try:
        outlet = socket_outlet(scope, renderer, key, head, tail, alive)
        if outlet is None:
            return False
        await sink.stream.aclose()  # never started: closing it runs no code
        await sink.direct(outlet)
        return True
    finally:
        RENDERERS.release(key)


def unavailable_error() -> GraphQLError:
    """A subscription's error when its stream cannot read the database (an outage)."""
    return GraphQLError(UNAVAILABLE_MESSAGE, extensions={"code": "UNAVAILABLE"})


class TransportWSHandler(BaseGraphQLTransportWSHandler[Context, None]):
    """graphql-transport-ws with the live fast path, closing with 1013 Try Again Later when
    the key cannot be looked up because the database is unreachable (the protocol has no
    error message before connection_ack: the close code is its answer)."""

    async def handle_connection_init(self, message: Any) -> None:
        try:
            await super().handle_connection_init(message)
        except DatabaseUnavailable:
            await self.websocket.close(code=TRY_AGAIN_LATER, reason=TRY_AGAIN_REASON)

    async def run_operation(self, operation: Operation[Context, None]) -> None:
        LIVE_SINK.set(LiveSink())  # this operation's task only
        await super().run_operation(operation)

    async def _send_result_stream(
        self, operation: Operation[Context, None], result_source: Any
    ) -> None:
        await super()._send_result_stream(operation, result_source)
        sink = LIVE_SINK.get()
        if sink is None or sink.stream is None:
            return
        # unchecked below: strawberry's adapter keeps Starlette's socket undeclared
        ws = self.websocket.ws  # type: ignore[attr-defined]
        op_id = orjson.dumps(operation.id).decode()

        async def send(text: str) -> None:
            if operation.completed:
                raise asyncio.CancelledError
            try:
                await ws.send_text(text)
            except Exception:
                operation.completed = True  # the socket is gone: send nothing more
                raise asyncio.CancelledError from None

        head = f'{{"id":{op_id},"type":"next","payload":'
        try:
            direct = await deliver_direct(
                self.schema,
                operation.query,
                operation.variables,
                operation.operation_name,
                sink,
                ws.scope,
                head,
                "}",
                lambda: not operation.completed,
            )
            if not direct:
                await deliver(
                    self.schema,
                    operation.query,
                    operation.variables,
                    operation.operation_name,
                    sink.stream,
                    head,
                    "}",
                    send,
                )
        except asyncio.CancelledError:
            if not operation.completed:
                raise
        except Exception as exc:
            if not is_database_unavailable(exc):
                raise
            # the stream's reads failed during an outage: the operation's error, not a bare
            # `complete` after a logged traceback (the client may subscribe again later)
            await operation.send_initial_errors([unavailable_error()])


class LegacyWSHandler(BaseGraphQLWSHandler[Context, None]):
    """graphql-ws with the live fast path, closing with 4403 (after `connection_error`) when
    the key is refused, and with 1013 Try Again Later (after `connection_error` with code
    UNAVAILABLE) when it cannot be looked up because the database is unreachable."""

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        payload = message.get("payload")
        if payload is not None and not isinstance(payload, dict):
            await self.send_message({"type": "connection_error"})
            await self.websocket.close(code=1000, reason="")
            return
        self.context.connection_params = payload
        try:
            await self.view.on_ws_connect(self.context)
        except ConnectionRejectionError as exc:
            await self.send_message({"type": "connection_error", "payload": exc.payload})
            await self.websocket.close(code=FORBIDDEN, reason="Forbidden")
            return
        except DatabaseUnavailable:
            error = dict(unavailable_error().formatted)
            await self.send_message({"type": "connection_error", "payload": error})
            await self.websocket.close(code=TRY_AGAIN_LATER, reason=TRY_AGAIN_REASON)
            return
        await self.send_message({"type": "connection_ack"})
        self.connection_acknowledged = True

    async def handle_async_results(
        self,
        operation_id: str,
        query: str,
        operation_name: str | None,
        variables: dict[str, object] | None,
    ) -> None:
        sink = LiveSink()
        LIVE_SINK.set(sink)
        try:
            result_source = await self.schema.subscribe(
                query=query,
                variable_values=variables,
                operation_name=operation_name,
                context_value=self.context,
                root_value=self.root_value,
            )
            self.subscriptions[operation_id] = result_source
            is_first_result = True
            async for result in result_source:
                if is_first_result and isinstance(result, PreExecutionError):
                    assert result.errors
                    error = ErrorMessage(
                        type="error", id=operation_id, payload=result.errors[0].formatted
                    )
                    await self.send_message(error)
                    return
                await self.send_data_message(result, operation_id)
                is_first_result = False
            if sink.stream is not None:
                # unchecked below: strawberry's adapter keeps Starlette's socket undeclared
                ws = self.websocket.ws  # type: ignore[attr-defined]
                op_id = orjson.dumps(operation_id).decode()
                head = f'{{"type":"data","id":{op_id},"payload":'
                try:
                    direct = await deliver_direct(
                        self.schema,
                        query,
                        variables,
                        operation_name,
                        sink,
                        ws.scope,
                        head,
                        "}",
                        lambda: operation_id in self.subscriptions,
                    )
                    if not direct:
                        await deliver(
                            self.schema,
                            query,
                            variables,
                            operation_name,
                            sink.stream,
                            head,
                            "}",
                            ws.send_text,
                        )
                except Exception as exc:
                    if not is_database_unavailable(exc):
                        raise
                    payload = unavailable_error().formatted
                    await self.send_message(
                        ErrorMessage(type="error", id=operation_id, payload=payload)
                    )
                    return
            await self.send_message(CompleteMessage(type="complete", id=operation_id))
        except asyncio.CancelledError:
            await self.send_message(CompleteMessage(type="complete", id=operation_id))
        finally:
            self.subscriptions.pop(operation_id, None)
            self.tasks.pop(operation_id, None)


SSE_NEXT = "event: next\r\ndata: "
SSE_END = "\r\n\r\n"


async def sse_messages(
    schema: Any,
    query: str,
    variables: dict[str, Any] | None,
    operation_name: str | None,
    results: AsyncIterator[Any],
    first: Callable[[Any], Awaitable[str]],
) -> AsyncIterator[str]:
    """The SSE messages of a subscription: strawberry's own results (errors, or the items of
    any other subscription) rendered by `first`, then, when the resolver handed its stream to
    the sink, each live item as `event: next` with the payload shared by every subscriber of
    the operation (the same text as on the WebSockets)."""
    sink = LiveSink()
    LIVE_SINK.set(sink)  # this stream's task only (strawberry runs it in a task of its own)
    async for result in results:
        yield await first(result)
    if sink.stream is not None:
        async for text in frames(
            schema, query, variables, operation_name, sink.stream, SSE_NEXT, SSE_END
        ):
            yield text
