"""Chargeback statements: `statements` (every department of a month or quarter) and
`statement` (one department), through costs/statements.py."""

from __future__ import annotations

from datetime import date, datetime
from enum import Enum
from typing import Annotated

import strawberry

from tallyql.auth.principal import Permission
from tallyql.costs import statements as book
from tallyql.engine.timerange import zone
from tallyql.schema.base.common import TimeRangeInput
from tallyql.schema.base.context import TallyInfo
from tallyql.schema.base.errors import BadInput
from tallyql.schema.base.scalars import Long


@strawberry.enum(description="The calendar period a statement covers.")
class StatementPeriod(Enum):
    MONTH = strawberry.enum_value("MONTH", description="A calendar month.")
    QUARTER = strawberry.enum_value(
        "QUARTER",
        description="A calendar quarter (January, April, July or October to the "
        "end of the third month).",
    )


@strawberry.type(description="One line of a statement: a member, a model, or a total.")
class StatementLine:
    key: str | None = strawberry.field(
        description="The member's user id or the model's name (null for events without "
        "one); on a department's totals its department, on the set's totals null."
    )
    provider: str | None = strawberry.field(description="For model lines: the model's provider.")
    requests: Long = strawberry.field(description="Events (count).")
    input_tokens: Long = strawberry.field(description="Input tokens (count).")
    output_tokens: Long = strawberry.field(description="Output tokens (count).")
    total_tokens: Long = strawberry.field(description="All tokens (count).")
    cost_usd: float = strawberry.field(
        description="Cost in USD; unpriced events count 0 (see unpricedEvents)."
    )
    unpriced_events: Long = strawberry.field(
        description="Events among these without a price (count): the cost leaves them out. "
        "On member lines always 0; see the department's unpricedModels."
    )

    @classmethod
    def of(cls, line: book.Line) -> StatementLine:
        return cls(
            key=line.key,
            provider=line.provider,
            requests=line.requests,
            input_tokens=line.input_tokens,
            output_tokens=line.output_tokens,
            total_tokens=line.total_tokens,
            cost_usd=line.cost_usd,
            unpriced_events=line.unpriced_events,
        )


@strawberry.type(description="The period a statement covers and whether it is final.")
class StatementPeriodInfo:
    period: StatementPeriod = strawberry.field(description="Month or quarter.")
    first_day: date = strawberry.field(description="The period's first local day.")
    start: datetime = strawberry.field(description="The period's start, inclusive (UTC).")
    end: datetime = strawberry.field(description="The period's end, exclusive (UTC).")
    timezone: str = strawberry.field(description="The IANA zone the period is counted in.")
    closed: bool = strawberry.field(
        description="True once the period has ended: the statement is then issued and kept; "
        "false while it is open (figures still change)."
    )
    issued_at: datetime | None = strawberry.field(
        description="When this version was issued; null while the period is open."
    )
    version: int | None = strawberry.field(
        description="1 when first issued, one more per restatement; null while open."
    )
    restated_reason: str | None = strawberry.field(
        description="Why this version replaced the one before (prices re-applied to the "
        "period's events); null for a first issue. Events that arrive for a closed period "
        "after it was issued do not change it."
    )

    @classmethod
    def of(cls, s: book.Statements) -> StatementPeriodInfo:
        return cls(
            period=StatementPeriod[s.period.name],
            first_day=s.first_day,
            start=s.start,
            end=s.end,
            timezone=s.timezone,
            closed=s.closed,
            issued_at=s.issued_at,
            version=s.version,
            restated_reason=s.restated_reason,
        )


@strawberry.type(description="One department's statement for a period.")
class DepartmentStatement:
    period: StatementPeriodInfo = strawberry.field(description="The period covered.")
    department: str | None = strawberry.field(
        description="The department (cost centre) the events' users had when the events "
        "were stored; null: users without one, and events without a user."
    )
    totals: StatementLine = strawberry.field(
        description="The department's totals: equal to `overview` filtered by the department "
        "over the same window."
    )
    members: list[StatementLine] = strawberry.field(
        description="A line per member (user id), the most costly first."
    )
    models: list[StatementLine] = strawberry.field(
        description="A line per model (with its provider), the most costly first."
    )
    unpriced_models: list[StatementLine] = strawberry.field(
        description="Models whose events had no price: `requests` counts them, the most "
        "frequent first."
    )

    @classmethod
    def of(cls, info: StatementPeriodInfo, d: book.DepartmentStatement) -> DepartmentStatement:
        return cls(
            period=info,
            department=d.department,
            totals=StatementLine.of(d.totals),
            members=[StatementLine.of(x) for x in d.members],
            models=[StatementLine.of(x) for x in d.models],
            unpriced_models=[StatementLine.of(x) for x in d.unpriced_models],
        )


@strawberry.type(description="Every department's statement for a period, with the totals.")
class StatementSet:
    period: StatementPeriodInfo = strawberry.field(description="The period covered.")
    totals: StatementLine = strawberry.field(
        description="All events of the period: equal to `overview` over the same window."
    )
    departments: list[DepartmentStatement] = strawberry.field(
        description="A statement per department, the most costly first; events without a "
        "department last."
    )


PeriodArg = Annotated[StatementPeriod, strawberry.argument(description="Month or quarter.")]
OfArg = Annotated[
    date, strawberry.argument(description="Any local day of the period (e.g. 2026-11-01).")
]
ZoneArg = Annotated[
    str, strawberry.argument(description="The IANA zone the period's days are counted in.")
]


async def _statements(
    info: TallyInfo, period: StatementPeriod, of: date, timezone: str
) -> book.Statements:
    context = info.context
    principal = context.require(Permission.READ)
    tz = zone(timezone)
    kind = book.StatementPeriod[period.name]
    try:
        _, start, end = book.period_bounds(kind, of, tz)
    except (ValueError, OverflowError):
        raise BadInput("the period must lie within the years 1 to 9999") from None
    asker = context.asker(TimeRangeInput(start=start, end=end, timezone=timezone), None)
    return await book.statements(
        context.services.db, asker, principal.workspace_id, kind, of, timezone
    )


@strawberry.type
class StatementQuery:
    @strawberry.field(
        description="Chargeback statements of a month or quarter: one per department, line "
        "items by member and by model, totals equal to `overview`; a closed period's "
        "statement is issued once and changes only when prices are re-applied (then it says "
        "so)."
    )
    async def statements(
        self, info: TallyInfo, period: PeriodArg, of: OfArg, timezone: ZoneArg = "UTC"
    ) -> StatementSet:
        s = await _statements(info, period, of, timezone)
        period_info = StatementPeriodInfo.of(s)
        return StatementSet(
            period=period_info,
            totals=StatementLine.of(s.totals),
            departments=[DepartmentStatement.of(period_info, d) for d in s.departments],
        )

    @strawberry.field(
        description="One department's chargeback statement of a month or quarter (zero "
        "totals and no lines when it had no events)."
    )
    async def statement(
        self,
        info: TallyInfo,
        period: PeriodArg,
        of: OfArg,
        department: Annotated[
            str | None,
            strawberry.argument(
                description="The department; null for users without one (and events "
                "without a user)."
            ),
        ],
        timezone: ZoneArg = "UTC",
    ) -> DepartmentStatement:
        s = await _statements(info, period, of, timezone)
        found = s.department(department) or book.DepartmentStatement(
            department, book.Line(department)
        )
        return DepartmentStatement.of(StatementPeriodInfo.of(s), found)
