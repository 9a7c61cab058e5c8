"""Renders live items to the JSON of a GraphQL response, once per item and operation.

Subscribers that run the same operation (query text, operation name and variables) share a
`Renderer`: each shared item (an event, a limit warning, an alert, an audit event) is
executed against the operation's selection set and encoded once, whatever the number of
subscribers it goes to. Items that belong to one subscriber (cost updates, lag notices) are
rendered for it alone. The operation was parsed, validated and authorised by strawberry
before it gets here.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson
from graphql import DocumentNode, ExecutionResult, GraphQLError, GraphQLSchema, parse
from graphql.execution.executor_throwing_on_incremental import ExecutorThrowingOnIncremental

from tallyql.live import subscriber as kinds
from tallyql.live.batches import BATCH
from tallyql.schema.base.errors import is_internal, user_error_code
from tallyql.schema.live_types import to_live_event

log = logging.getLogger(__name__)

SHARED = frozenset(
    {kinds.REQUEST, kinds.ERROR, kinds.LIMIT_WARNING, kinds.AUDIT, kinds.ALERT, BATCH}
)
CACHE_ITEMS = 4096
CACHE_BYTES = 16 * 1024 * 1024
"""Bound of the rendered text a renderer keeps (a batch of a busy workspace is tens of kB: an
item count alone would let the cache hold minutes of them). An item evicted before a lagging
subscriber takes it is rendered again for it."""
FRAMES_PER_ITEM = 8
"""Distinct heads (operation ids) whose message is kept per item; more are spliced anew."""


@lru_cache(maxsize=256)
def _document(query: str) -> DocumentNode:
    return parse(query)


def _format(error: GraphQLError) -> dict[str, Any]:
    if is_internal(error):
        log.error("internal error rendering a live item: %s", error.original_error)
        return {"message": "Internal server error", "extensions": {"code": "INTERNAL_ERROR"}}
    formatted: dict[str, Any] = dict(error.formatted)
    code = user_error_code(error.original_error) or "BAD_USER_INPUT"
    formatted["extensions"] = {**(formatted.get("extensions") or {}), "code": code}
    return formatted


@dataclass
class RenderStats:
    """Process-wide counts (for /health, the benchmark and tests): how often items were
    executed and encoded, and how often a message was spliced from an encoded payload."""

    executions: int = 0
    splices: int = 0


STATS = RenderStats()


class Renderer:
    def __init__(
        self,
        schema: GraphQLSchema,
        query: str,
        variables: dict[str, Any] | None,
        operation_name: str | None,
    ) -> None:
        built = ExecutorThrowingOnIncremental.build(
            schema, _document(query), None, None, variables, operation_name
        )
        if isinstance(built, list):
            raise GraphQLError(built[0].message)
        self._executor = built
        self._cache: OrderedDict[int, _Rendered] = OrderedDict()
        self._bytes = 0
        self.users = 0
        self.renders = 0

    def payload(self, kind: str, value: Any) -> bytes:
        """The JSON of the `next`/`data` payload for one item."""
        return self._entry(kind, value).payload

    def frame(self, kind: str, value: Any, head: str, tail: str) -> str:
        """The whole message for one item: `head + payload + tail`. A transport's head holds
        what differs between subscribers (the operation id), so the message is spliced once
        per shared item and distinct head (clients mostly number their operations alike, so
        usually once per item): the same string goes to every socket."""
        entry = self._entry(kind, value)
        frames = entry.frames
        if frames is None:  # an item of one subscriber: spliced for it alone
            STATS.splices += 1
            return head + entry.text + tail
        text = frames.get((head, tail))
        if text is None:
            text = head + entry.text + tail
            STATS.splices += 1
            if len(frames) < FRAMES_PER_ITEM:
                frames[(head, tail)] = text
                self._bytes += len(text)
                self._evict()
        return text

    def _entry(self, kind: str, value: Any) -> _Rendered:
        shared = kind in SHARED
        if shared:
            hit = self._cache.get(id(value))
            if hit is not None and hit.value is value:
                return hit
        executor = self._executor.build_per_event_executor(to_live_event(kind, value))
        # graphql-core memoises collected subfields per executor, keyed by the identity of
        # lists made afresh by each execution and keeping them alive; per-event executors
        # are shallow copies sharing that dict, so it never hit and grew by every item for
        # as long as the operation had a subscriber (the live RSS leak). A dict per item.
        executor._relevant_sub_fields = {}
        result = executor.execute_operation(False)
        assert isinstance(result, ExecutionResult), "live items resolve synchronously"
        body: dict[str, Any] = {"data": result.data}
        if result.errors:
            body["errors"] = [_format(e) for e in result.errors]
        entry = _Rendered(value, orjson.dumps(body), shared)
        self.renders += 1
        STATS.executions += 1
        if shared:
            self._cache[id(value)] = entry
            self._bytes += len(entry.payload) + len(entry.text)
            self._evict()
        return entry

    def _evict(self) -> None:
        while len(self._cache) > 1 and (
            len(self._cache) > CACHE_ITEMS or self._bytes > CACHE_BYTES
        ):
            _, old = self._cache.popitem(last=False)
            self._bytes -= old.size()


class _Rendered:
    """One item rendered for one operation: its payload, as bytes and text, and the messages
    spliced from it so far (None for an item of one subscriber, never reused)."""

    __slots__ = ("frames", "payload", "text", "value")

    def __init__(self, value: Any, payload: bytes, shared: bool) -> None:
        self.value = value  # kept so that id(value) is not reused while cached
        self.payload = payload
        self.text = payload.decode()
        self.frames: dict[tuple[str, str], str] | None = {} if shared else None

    def size(self) -> int:
        """Characters and bytes held (as counted into the renderer's bound)."""
        spliced = sum(len(text) for text in self.frames.values()) if self.frames else 0
        return len(self.payload) + len(self.text) + spliced


class Renderers:
    """The renderers in use, one per distinct operation."""

    def __init__(self) -> None:
        self._by_key: dict[bytes, Renderer] = {}

    def acquire(
        self,
        schema: GraphQLSchema,
        query: str,
        variables: dict[str, Any] | None,
        operation_name: str | None,
    ) -> tuple[bytes, Renderer]:
        key = orjson.dumps([query, operation_name, variables or {}], option=orjson.OPT_SORT_KEYS)
        renderer = self._by_key.get(key)
        if renderer is None:
            renderer = Renderer(schema, query, variables, operation_name)
            self._by_key[key] = renderer
        renderer.users += 1
        return key, renderer

    def release(self, key: bytes) -> None:
        renderer = self._by_key.get(key)
        if renderer is not None:
            renderer.users -= 1
            if renderer.users <= 0:
                del self._by_key[key]

    def __len__(self) -> int:
        return len(self._by_key)

    @property
    def users(self) -> int:
        """Subscriptions rendered by the renderers in use (count)."""
        return sum(renderer.users for renderer in self._by_key.values())


RENDERERS = Renderers()
