"""ASGI middleware: cyclic garbage is collected when no HTTP request is in flight.

Building SQL statements leaves a few thousand objects in reference cycles per analytics
request (SQLAlchemy's expression trees point back at themselves), which only the cyclic
collector frees. With the server's raised thresholds (`tallyql.cli.tune_gc`) it ran every
dozen or so dashboard requests and stopped the event loop for 50 to 65 ms in the middle of
one, the slowest twentieth of every field's timings. Collecting the youngest generation as
soon as the server is idle frees the same garbage in pauses of a few milliseconds between
requests; under concurrent load the server is rarely idle and the thresholds act as before.

The older generations are collected here too, when their counts pass their thresholds, as the
automatic collector would: CPython checks them only when the youngest generation's threshold
triggers a collection, which never happens while the idle collections keep the youngest
below it. Cyclic garbage that survived one young collection (objects still referenced by a
running task when it ran) then stayed in the middle generation until traffic was dense
enough for the young threshold to be reached without an idle moment.
"""

from __future__ import annotations

import asyncio
import gc

from starlette.types import ASGIApp, Receive, Scope, Send

YOUNG_OBJECTS = 5_000
"""Collect once at least this many objects have been allocated (net) since the last
collection: about one analytics request's garbage."""


class IdleCollector:
    def __init__(self, app: ASGIApp, young_objects: int = YOUNG_OBJECTS) -> None:
        self.app = app
        self.young_objects = young_objects
        self.in_flight = 0
        self.collections = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
            idle = self.in_flight == 0 and gc.isenabled()
            if idle and gc.get_count()[0] >= self.young_objects:
                # after this task's last step: the response has been sent
                asyncio.get_running_loop().call_soon(self._collect)

    def _collect(self) -> None:
        if self.in_flight == 0:
            gc.collect(generation_due())
            self.collections += 1


def generation_due() -> int:
    """The oldest generation whose count has passed its threshold (0 when none has): what
    the automatic collector would collect. A collection of a generation counts once toward
    the next one's threshold."""
    counts, thresholds = gc.get_count(), gc.get_threshold()
    due = 0
    for generation in (1, 2):
        if counts[generation] >= thresholds[generation]:
            due = generation
    return due
