"""Scheduled reports: what a report holds and when it runs.

A report runs on a cron schedule read in its IANA zone (croniter), over a range relative to
the run (the previous full day, week or month, or a trailing window), and renders its sections
(overview with the previous period, top-N breakdowns, cost insights, budgets, session
statistics, errors) as CSV (a zip, one file per section), HTML and PDF."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, croniter

from tallyql.engine.filter_codec import spec_from_json
from tallyql.engine.filters import EventFilterSpec
from tallyql.engine.periods import Period, period_bounds
from tallyql.engine.registry import Dimension
from tallyql.field_error import FieldError
from tallyql.mail.smtp import MAX_RECIPIENTS, valid_address

MAX_SECTIONS = 20
MAX_TOP = 100
MIN_INTERVAL = timedelta(minutes=5)
"""Two runs of a schedule lie at least this far apart (a report is not a live feed)."""
FILE_DAYS = 30
"""How long a run's files can be downloaded."""


class ReportError(FieldError):
    """A report schedule described wrongly (field, message)."""


class ReportRange(StrEnum):
    PREVIOUS_DAY = "previous_day"
    PREVIOUS_WEEK = "previous_week"
    PREVIOUS_MONTH = "previous_month"
    MONTH_TO_DATE = "month_to_date"
    LAST_24H = "last_24h"
    LAST_7D = "last_7d"
    LAST_30D = "last_30d"


class SectionKind(StrEnum):
    OVERVIEW = "overview"
    BREAKDOWN = "breakdown"
    COST_INSIGHTS = "cost_insights"
    BUDGETS = "budgets"
    SESSION_STATS = "session_stats"
    ERRORS = "errors"


class ReportFormat(StrEnum):
    CSV = "csv"
    HTML = "html"
    PDF = "pdf"


@dataclass(frozen=True)
class Section:
    kind: SectionKind
    dimension: Dimension | None = None
    top: int = 10

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "dimension": self.dimension.value if self.dimension else None,
            "top": self.top,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Section:
        dimension = data.get("dimension")
        return cls(
            SectionKind(data["kind"]), Dimension(dimension) if dimension else None, data["top"]
        )


@dataclass(frozen=True)
class Report:
    workspace_id: int
    id: str
    name: str
    schedule: str
    timezone: str
    range: ReportRange
    filter: EventFilterSpec
    sections: tuple[Section, ...]
    formats: tuple[ReportFormat, ...]
    recipients: tuple[str, ...]
    webhook_ids: tuple[str, ...]
    enabled: bool
    next_run_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> Report:
        return cls(
            workspace_id=row["workspace_id"],
            id=row["id"],
            name=row["name"],
            schedule=row["schedule"],
            timezone=row["timezone"],
            range=ReportRange(row["range"]),
            filter=spec_from_json(row["filter"]),
            sections=tuple(Section.from_json(s) for s in row["sections"]),
            formats=tuple(ReportFormat(f) for f in row["formats"]),
            recipients=tuple(row["recipients"]),
            webhook_ids=tuple(row["webhook_ids"]),
            enabled=bool(row["enabled"]),
            next_run_at=row["next_run_at"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )


def zone_of(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ValueError, ZoneInfoNotFoundError):
        raise ReportError("timezone", f"unknown IANA time zone {name!r}") from None


def next_run(schedule: str, timezone: str, after: datetime) -> datetime:
    """The first moment of the schedule strictly after `after`, in UTC. The expression is
    read in the report's zone, so "0 8 * * 1" is Monday 08:00 local, across DST changes."""
    tz = zone_of(timezone)
    try:
        found = croniter(schedule, after.astimezone(tz)).get_next(datetime)
    except (CroniterBadCronError, ValueError, KeyError) as exc:
        raise ReportError("schedule", f"not a cron expression: {exc}") from None
    return found.astimezone(UTC)


def check_schedule(schedule: str, timezone: str, now: datetime) -> datetime:
    """The schedule's next run; ReportError unless it is a five-field cron expression whose
    runs lie at least MIN_INTERVAL apart."""
    if len(schedule.split()) != 5:
        raise ReportError("schedule", "give five cron fields: minute hour day month weekday")
    first = next_run(schedule, timezone, now)
    moment = first
    for _ in range(24):  # the next runs, to catch "every minute" and similar
        following = next_run(schedule, timezone, moment)
        if following - moment < MIN_INTERVAL:
            raise ReportError("schedule", "runs must lie at least 5 minutes apart")
        moment = following
    return first


def range_window(kind: ReportRange, at: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """[start, end) in UTC of a run at `at`: previous periods are whole local periods."""
    if kind is ReportRange.LAST_24H:
        return at - timedelta(hours=24), at
    if kind is ReportRange.LAST_7D:
        return at - timedelta(days=7), at
    if kind is ReportRange.LAST_30D:
        return at - timedelta(days=30), at
    if kind is ReportRange.MONTH_TO_DATE:
        return period_bounds(Period.MONTH, at, tz)[0], at
    period = {
        ReportRange.PREVIOUS_DAY: Period.DAY,
        ReportRange.PREVIOUS_WEEK: Period.WEEK,
        ReportRange.PREVIOUS_MONTH: Period.MONTH,
    }[kind]
    current_start = period_bounds(period, at, tz)[0]
    previous_start = period_bounds(period, current_start - timedelta(microseconds=1), tz)[0]
    return previous_start, current_start


def check_sections(sections: list[Section]) -> None:
    if not 1 <= len(sections) <= MAX_SECTIONS:
        raise ReportError("sections", f"give 1 to {MAX_SECTIONS} sections")
    for s in sections:
        if s.kind is SectionKind.BREAKDOWN and s.dimension is None:
            raise ReportError("sections", "a BREAKDOWN section needs a dimension")
        if s.kind is not SectionKind.BREAKDOWN and s.dimension is not None:
            raise ReportError("sections", "only a BREAKDOWN section takes a dimension")
        if not 1 <= s.top <= MAX_TOP:
            raise ReportError("sections", f"top must be between 1 and {MAX_TOP}")


def check_recipients(recipients: list[str]) -> list[str]:
    if len(recipients) > MAX_RECIPIENTS:
        raise ReportError("recipients", f"at most {MAX_RECIPIENTS} recipients")
    for address in recipients:
        if not valid_address(address):
            raise ReportError("recipients", f"{address!r} is not an email address")
    return list(dict.fromkeys(recipients))
