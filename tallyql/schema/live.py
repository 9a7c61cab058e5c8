"""`Subscription.events`: committed events, errors, cost updates, limit warnings, alerts and
audit events of the caller's workspace, as they happen."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Annotated

import strawberry

from tallyql.auth.principal import Permission
from tallyql.engine.timerange import zone
from tallyql.live.sink import LIVE_SINK
from tallyql.live.stream import StreamRequest
from tallyql.live.subscriber import ALL_TYPES
from tallyql.schema.common import FilterArg, filter_spec
from tallyql.schema.context import TallyInfo
from tallyql.schema.errors import BadInput
from tallyql.schema.live_types import LiveEvent, LiveEventType, to_live_event

MAX_INTERVAL = 3600


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
    ) -> AsyncGenerator[LiveEvent, None]:  # type: ignore[valid-type]
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
        stream = live.service.stream(request)
        sink = LIVE_SINK.get()
        if sink is not None:
            sink.attach(stream)  # the WebSocket transport delivers the items itself
            return
        try:
            async for kind, value in stream:
                yield to_live_event(kind, value)
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
