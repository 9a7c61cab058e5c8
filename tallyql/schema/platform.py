"""`workspaces`: the operator's view across workspaces (admin keys of the operator workspace)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from enum import Enum
from typing import Annotated

import strawberry

from tallyql.auth.operator import require_operator
from tallyql.auth.principal import Permission
from tallyql.engine import analytics as engine
from tallyql.engine import platform
from tallyql.engine.analytics import Asker
from tallyql.engine.query.buckets import Granularity as EngineGranularity
from tallyql.engine.query.registry import Dimension, DimensionRef, Metric
from tallyql.schema.analytics import Series, TimeSeries
from tallyql.schema.base.common import DescendingArg, RangeArg
from tallyql.schema.base.context import TallyInfo
from tallyql.schema.base.scalars import Long, as_count
from tallyql.schema.base.usage import TokenUsage
from tallyql.storage.workspaces import WorkspaceInfo, list_workspaces

PROVIDER_SERIES = 10


@strawberry.enum(description="How to order workspaces.")
class WorkspaceOrder(Enum):
    COST = strawberry.enum_value("COST", description="By cost in USD.")
    REQUESTS = strawberry.enum_value("REQUESTS", description="By events (count).")
    TOKENS = strawberry.enum_value("TOKENS", description="By input plus output tokens.")
    NAME = strawberry.enum_value("NAME", description="By name.")


@strawberry.enum(
    description="HIGH_COST: above 2x the average; COST_JUMP: a day at 2x the day before."
)
class AnomalyKind(Enum):
    HIGH_COST = strawberry.enum_value(
        "HIGH_COST", description="The range's cost is above 2x the active workspaces' average."
    )
    COST_JUMP = strawberry.enum_value(
        "COST_JUMP", description="A local day's cost is at least 2x the day before."
    )


@strawberry.type(description="One workspace's usage in the range.")
class WorkspaceUsage(TokenUsage):
    id: strawberry.ID = strawberry.field(description="The workspace's id.")
    name: str = strawberry.field(description="The workspace's name.")
    created_at: datetime = strawberry.field(description="When the workspace was created.")
    requests: Long = strawberry.field(description="Events of every kind (count).")
    errors: Long = strawberry.field(description="Events with status error (count).")
    cost_share: float | None = strawberry.field(description="Of the platform's cost (0 to 1).")


@strawberry.type(description="Totals over every workspace in the range.")
class PlatformTotals(TokenUsage):
    workspaces: int = strawberry.field(description="Workspaces that exist.")
    active_workspaces: int = strawberry.field(description="Workspaces with traffic in the range.")
    requests: Long = strawberry.field(description="Events of every kind (count).")
    errors: Long = strawberry.field(description="Events with status error (count).")


@strawberry.type(
    description="Spend on the caller's own provider keys (BYOK) versus the platform's."
)
class SpendSplit:
    byok_cost_usd: float = strawberry.field(
        description="Cost in USD of calls made with the caller's own provider keys."
    )
    platform_cost_usd: float = strawberry.field(
        description="Cost in USD of calls made with the platform's keys."
    )
    byok_requests: Long = strawberry.field(description="Events with isByok true (count).")
    platform_requests: Long = strawberry.field(description="Other events (count).")
    byok_share: float | None = strawberry.field(description="BYOK share of the cost (0 to 1).")


@strawberry.type(description="A workspace whose cost stands out.")
class WorkspaceAnomaly:
    kind: AnomalyKind = strawberry.field(description="What stands out.")
    workspace_id: strawberry.ID = strawberry.field(description="The workspace's id.")
    workspace_name: str | None = strawberry.field(description="The workspace's name.")
    day: datetime | None = strawberry.field(description="COST_JUMP: the local day's start.")
    cost_usd: float = strawberry.field(
        description="The workspace's cost in USD (range, or that day)."
    )
    baseline_usd: float = strawberry.field(
        description="HIGH_COST: the average over active workspaces; COST_JUMP: the day before."
    )
    ratio: float | None = strawberry.field(
        description="costUsd / baselineUsd (2.5 is two and a half times); null when the "
        "baseline is 0."
    )


def _usage(info: WorkspaceInfo, figures: dict[Metric, float], total_cost: float) -> WorkspaceUsage:
    cost = figures.get(Metric.COST_USD, 0.0)
    return WorkspaceUsage(
        id=strawberry.ID(str(info.id)),
        name=info.name,
        created_at=info.created_at,
        requests=as_count(figures.get(Metric.REQUESTS, 0.0)),
        errors=as_count(figures.get(Metric.ERRORS, 0.0)),
        input_tokens=as_count(figures.get(Metric.INPUT_TOKENS, 0.0)),
        output_tokens=as_count(figures.get(Metric.OUTPUT_TOKENS, 0.0)),
        total_tokens=as_count(figures.get(Metric.TOTAL_TOKENS, 0.0)),
        cost_usd=cost,
        cost_share=cost / total_cost if total_cost else None,
    )


_ORDER: dict[WorkspaceOrder, Callable[[WorkspaceUsage], float]] = {
    WorkspaceOrder.COST: lambda u: u.cost_usd,
    WorkspaceOrder.REQUESTS: lambda u: u.requests,
    WorkspaceOrder.TOKENS: lambda u: u.total_tokens,
}


@strawberry.type(description="Usage across every workspace; each part is computed when asked.")
class WorkspacesReport:
    _asker: strawberry.Private[Asker]
    _order: strawberry.Private[WorkspaceOrder]
    _descending: strawberry.Private[bool]

    @strawberry.field(description="Every workspace, with its usage in the range.")
    async def nodes(self, info: TallyInfo) -> list[WorkspaceUsage]:
        directory = await list_workspaces(info.context.services.db)
        figures = await platform.figures_by_workspace(self._asker)
        total = sum(f[Metric.COST_USD] for f in figures.values())
        rows = [_usage(w, figures.get(w.id, {}), total) for w in directory]
        rows.sort(key=lambda u: (u.name, int(u.id)), reverse=self._descending)
        if self._order is not WorkspaceOrder.NAME:
            value = _ORDER[self._order]
            sign = -1 if self._descending else 1
            rows.sort(key=lambda u: (sign * value(u), u.name, int(u.id)))
        return rows

    @strawberry.field(description="Totals over every workspace.")
    async def totals(self, info: TallyInfo) -> PlatformTotals:
        values = await platform.totals(self._asker)
        figures = await platform.figures_by_workspace(self._asker)
        directory = await list_workspaces(info.context.services.db)
        return PlatformTotals(
            workspaces=len(directory),
            active_workspaces=sum(1 for f in figures.values() if f[Metric.REQUESTS] > 0),
            requests=as_count(values[Metric.REQUESTS]),
            errors=as_count(values[Metric.ERRORS]),
            input_tokens=as_count(values[Metric.INPUT_TOKENS]),
            output_tokens=as_count(values[Metric.OUTPUT_TOKENS]),
            total_tokens=as_count(values[Metric.TOTAL_TOKENS]),
            cost_usd=values[Metric.COST_USD],
        )

    @strawberry.field(description=f"Cost per local day for the top {PROVIDER_SERIES} providers.")
    async def daily_cost_by_provider(self) -> TimeSeries:
        result = await engine.timeseries(
            self._asker,
            (Metric.COST_USD,),
            EngineGranularity.DAY,
            DimensionRef(Dimension.PROVIDER),
            PROVIDER_SERIES,
            False,
        )
        return TimeSeries(
            granularity=result.granularity,
            buckets=result.buckets,
            series=[
                Series(
                    metric=s.metric,
                    group=None if s.group is None else str(s.group),
                    is_other=s.is_other,
                    values=s.values,
                    previous=None,
                )
                for s in result.series
            ],
        )

    @strawberry.field(description="Spend on the callers' own keys versus the platform's.")
    async def byok_vs_platform(self) -> SpendSplit:
        split = await platform.byok_split(self._asker)
        total = split.byok_cost_usd + split.platform_cost_usd
        return SpendSplit(
            byok_cost_usd=split.byok_cost_usd,
            platform_cost_usd=split.platform_cost_usd,
            byok_requests=as_count(split.byok_requests),
            platform_requests=as_count(split.platform_requests),
            byok_share=split.byok_cost_usd / total if total else None,
        )

    @strawberry.field(description="Workspaces above 2x the average cost, and day-over-day jumps.")
    async def anomalies(self, info: TallyInfo) -> list[WorkspaceAnomaly]:
        names = {w.id: w.name for w in await list_workspaces(info.context.services.db)}
        found = [*await platform.high_cost(self._asker), *await platform.cost_jumps(self._asker)]
        return [
            WorkspaceAnomaly(
                kind=AnomalyKind(a.kind),
                workspace_id=strawberry.ID(str(a.workspace_id)),
                workspace_name=names.get(a.workspace_id),
                day=a.day,
                cost_usd=a.cost_usd,
                baseline_usd=a.baseline_usd,
                ratio=a.ratio,
            )
            for a in found
        ]


@strawberry.type
class PlatformQuery:
    @strawberry.field(
        description="Usage of every workspace (admin keys of the operator workspace)."
    )
    async def workspaces(
        self,
        info: TallyInfo,
        range: RangeArg,
        order_by: Annotated[
            WorkspaceOrder,
            strawberry.argument(description="What ranks the workspaces."),
        ] = WorkspaceOrder.COST,
        descending: DescendingArg = True,
    ) -> WorkspacesReport:
        principal = info.context.require(Permission.ADMIN)
        require_operator(principal, info.context.services.settings)
        asker = info.context.asker(range, None, "*")
        return WorkspacesReport(_asker=asker, _order=order_by, _descending=descending)
