"""Identical GraphQL questions asked at the same time are computed once (single flight).

When many people watch the same dashboards, their browsers ask the same questions: the same
workspace, role, document, variables and operation name. Each such question has at most one
computation running and one waiting. A request that arrives while none runs starts one at
once; a request that arrives while one runs joins the waiting one, which starts when the
running one ends and answers everyone who joined it. Fifty identical requests arriving
together cost two computations, not fifty.

Why this never serves an answer older than the request: a request only ever joins a
computation that has not started yet, and a computation reads the database only after it
starts, so it sees every event committed before any of its requests started, whichever
replica committed it (each replica computes its own answers from the database; nothing is
shared between processes, and no data version is needed). Relative presets (LAST_24H, ...)
are resolved when the computation runs, at an instant after every one of its requests
started, as a single request's are resolved while it runs.

What is shared: queries only (never mutations), over POST with a JSON body
(tallyql/http/graphql_fast.py), not explained (X-Tallyql-Explain) nor forced to raw events,
and whose root fields do not depend on the key itself (`me` names the key). Each request
still pays its own cost points: the leader's meter charges as it runs, and every other
request is charged what the leader spent from its own key's budget per minute (refused with
RATE_LIMITED like any request when its key cannot pay). An answer refused for the leader's
own key budget (RATE_LIMITED, COST_LIMIT) is not shared: the others compute their own.
TALLYQL_SHARE_IDENTICAL_QUERIES=false turns sharing off.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass
class _Flight(Generic[T]):
    answer: asyncio.Future[T]
    joined: int = 1
    started: bool = False
    run: Callable[[], Coroutine[Any, Any, T]] | None = None


@dataclass
class SingleFlight(Generic[T]):
    """At most one running and one waiting computation per key."""

    computations: int = 0
    """Computations started (for tests and /metrics)."""
    shared: int = 0
    """Requests answered by a computation another request started."""
    _running: dict[Hashable, _Flight[T]] = field(default_factory=dict)
    _waiting: dict[Hashable, _Flight[T]] = field(default_factory=dict)

    async def do(self, key: Hashable, run: Callable[[], Coroutine[Any, Any, T]]) -> tuple[T, bool]:
        """(the answer, whether it was shared): `run` is called only when this request
        starts a computation; otherwise the answer is that of a computation that starts
        after this call."""
        waiting = self._waiting.get(key)
        if waiting is not None:  # not started yet: it will read after we arrived
            waiting.joined += 1
            self.shared += 1
            return await asyncio.shield(waiting.answer), True
        loop = asyncio.get_running_loop()
        flight: _Flight[T] = _Flight(answer=loop.create_future(), run=run)
        if key in self._running:
            self._waiting[key] = flight  # starts when the running one ends
        else:
            self._start(key, flight)
        return await asyncio.shield(flight.answer), False

    def _start(self, key: Hashable, flight: _Flight[T]) -> None:
        assert flight.run is not None
        flight.started = True
        self._running[key] = flight
        self.computations += 1
        task = asyncio.get_running_loop().create_task(flight.run())
        task.add_done_callback(lambda done: self._finish(key, flight, done))

    def _finish(self, key: Hashable, flight: _Flight[T], done: asyncio.Task[T]) -> None:
        if self._running.get(key) is flight:
            del self._running[key]
        if done.cancelled():
            flight.answer.cancel()
        elif (error := done.exception()) is not None:
            flight.answer.set_exception(error)
        else:
            flight.answer.set_result(done.result())
        waiting = self._waiting.pop(key, None)
        if waiting is not None:
            self._start(key, waiting)


def shared_key(
    workspace_id: int, role: str, data: dict[str, Any], explain: bool, force_raw: bool
) -> Hashable | None:
    """The identity of a question, or None when it must not be shared."""
    if explain or force_raw:
        return None
    variables = data.get("variables")
    extensions = data.get("extensions")
    return (
        workspace_id,
        role,
        data["query"],
        _frozen(variables) if variables else None,
        data.get("operationName"),
        _frozen(extensions) if extensions else None,
    )


def _frozen(value: Any) -> Hashable:
    """A hashable copy of a JSON value (dict key order does not matter)."""
    if isinstance(value, dict):
        return ("{", tuple(sorted((k, _frozen(v)) for k, v in value.items())))
    if isinstance(value, list):
        return ("[", tuple(_frozen(v) for v in value))
    if isinstance(value, bool):
        return ("b", value)  # True == 1 in Python, not in GraphQL
    if isinstance(value, float) and value.is_integer():
        return ("f", value)  # 1.0 is not 1 to GraphQL's Int coercion
    return value
