"""`Subscription.events`: committed events, errors, cost updates, limit warnings, alerts and
audit events of the caller's workspace, as they happen, one item each; and
`Subscription.eventBatches`: the committed events coalesced into one item per short window
(live/batches.py), for the many people watching one busy workspace."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from functools import partial
from typing import Annotated

import strawberry

from tallyql.auth.principal import Permission
from tallyql.engine.query.timerange import zone
from tallyql.live.fanout import ERROR, REQUEST
from tallyql.live.sink import LIVE_SINK
from tallyql.live.stream import (
    BatchRequest,
    StreamRequest,
    open_batch_stream,
    open_stream,
    run_batch_outlet,
)
from tallyql.live.subscriber import ALL_TYPES
from tallyql.schema.base.common import FilterArg, filter_spec
from tallyql.schema.base.context import TallyInfo
from tallyql.schema.base.errors import BadInput
from tallyql.schema.live_types import (
    EventBatchItem,
    LiveEvent,
    LiveEventType,
    to_live_event,
)

MAX_INTERVAL = 3600
MIN_LATENCY_MS = 10
MAX_LATENCY_MS = 10_000
BATCH_TYPES = frozenset({REQUEST, ERROR})


@strawberry.type
class LiveSubscription:
    @strawberry.subscription(
        description="Live items of the caller's workspace. `filter` selects the events "
        "(REQUEST, ERROR) and what COST_UPDATE totals count; notices (LIMIT_WARNING, ALERT, "
        "AUDIT) are the workspace's. COST_UPDATE comes at the start and every `interval` "
        "seconds; `timezone` sets today's boundaries. `types` defaults to all of them."
    )
    async def events(
        self,
        info: TallyInfo,
        filter: FilterArg = None,
        types: Annotated[
            list[LiveEventType] | None,
            strawberry.argument(description="What to receive; null: every type."),
        ] = None,
        interval: Annotated[
            int,
            strawberry.argument(description="Seconds between COST_UPDATE items (1 to 3600)."),
        ] = 10,
        timezone: Annotated[
            str,
            strawberry.argument(
                description="IANA zone that sets today's boundaries for COST_UPDATE."
            ),
        ] = "UTC",
    ) -> AsyncGenerator[LiveEvent, None]:
        principal = info.context.require(Permission.READ)
        if not 1 <= interval <= MAX_INTERVAL:
            raise BadInput(f"interval must be between 1 and {MAX_INTERVAL} seconds")
        live = info.context.services.live
        assert live is not None, "the live service is not running"
        request = StreamRequest(
            workspace_id=principal.workspace_id,
            filter=filter_spec(filter),
            types=frozenset(t.value for t in types) if types else ALL_TYPES,
            interval=float(interval),
            tz=zone(timezone),
        )
        stream = open_stream(live.service, request)
        sink = LIVE_SINK.get()
        if sink is not None:
            sink.attach(stream)  # the WebSocket transport delivers the items itself
            return
        try:
            async for kind, value in stream:
                yield to_live_event(kind, value)
        finally:
            await stream.aclose()

    @strawberry.subscription(
        description="The caller's workspace's committed events (REQUEST, ERROR) matching "
        "`filter`, coalesced: the events committed within one window of at most "
        "`maxLatencyMs` come as one EventBatch, in commit order, with the window's totals and "
        "running totals. Subscribers with the same filter, types, maxLatencyMs and selection "
        "share one encoded batch per window. A subscriber that falls behind receives Lagged "
        "with the count of events it missed. For notices and COST_UPDATE, use `events`."
    )
    async def event_batches(
        self,
        info: TallyInfo,
        filter: FilterArg = None,
        types: Annotated[
            list[LiveEventType] | None,
            strawberry.argument(
                description="Which events to list: REQUEST (every event), ERROR (events with "
                "status error); null: both. Other types are refused."
            ),
        ] = None,
        max_latency_ms: Annotated[
            int,
            strawberry.argument(
                description="Milliseconds the server may hold an event back to send it with "
                f"later ones ({MIN_LATENCY_MS} to {MAX_LATENCY_MS})."
            ),
        ] = 250,
    ) -> AsyncGenerator[EventBatchItem, None]:
        principal = info.context.require(Permission.READ)
        if not MIN_LATENCY_MS <= max_latency_ms <= MAX_LATENCY_MS:
            raise BadInput(f"maxLatencyMs must be between {MIN_LATENCY_MS} and {MAX_LATENCY_MS}")
        chosen = frozenset(t.value for t in types) if types else BATCH_TYPES
        if not chosen <= BATCH_TYPES:
            raise BadInput("eventBatches carries REQUEST and ERROR; other types come on events")
        live = info.context.services.live
        assert live is not None, "the live service is not running"
        request = BatchRequest(
            workspace_id=principal.workspace_id,
            filter=filter_spec(filter),
            types=chosen,
            window=max_latency_ms / 1000,
        )
        stream = open_batch_stream(live.service, request)
        sink = LIVE_SINK.get()
        if sink is not None:  # the transport delivers the items itself
            sink.attach(stream, partial(run_batch_outlet, live.service, request))
            return
        try:
            async for kind, value in stream:
                yield to_live_event(kind, value)
        finally:
            await stream.aclose()
