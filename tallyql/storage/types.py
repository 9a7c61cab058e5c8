"""Column types that read and write the same Python values on SQLite and PostgreSQL.

- `UtcDateTime`: aware UTC datetimes. PostgreSQL stores `timestamptz`; SQLite stores integer
  microseconds since the Unix epoch, which compare and bucket fast and are UTC by definition.
- `JsonValue`: JSON documents (`jsonb` on PostgreSQL, text on SQLite).
- `TagList`: lists of strings (`text[]` on PostgreSQL, a JSON array on SQLite).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, assert_never

import orjson
from sqlalchemy import JSON, BigInteger, Text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TIMESTAMP
from sqlalchemy.engine import Dialect as SqlAlchemyDialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from tallyql.storage.dialect import Dialect

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_micros(value: datetime) -> int:
    """Microseconds since the epoch of an aware datetime."""
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


def parse_timestamp(value: Any) -> datetime:
    """An RFC 3339 timestamp with an offset, as aware UTC; ValueError otherwise."""
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 string such as 2026-01-31T12:00:00Z")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("must be an RFC 3339 string such as 2026-01-31T12:00:00Z") from None
    if parsed.tzinfo is None:
        raise ValueError("must carry a UTC offset (Z or +hh:mm)")
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+14:00 is before year 1 in UTC
        raise ValueError("is outside the years 1 to 9999 in UTC") from None


def stored_time(dialect: Dialect, value: datetime) -> datetime | int:
    """An aware time as stored (`UtcDateTime`; also for parameters of text SQL): timestamptz
    on PostgreSQL, epoch microseconds on SQLite."""
    if value.tzinfo is None:
        raise ValueError("naive datetimes are not stored; pass an aware UTC datetime")
    match dialect:
        case Dialect.POSTGRESQL:
            return value.astimezone(UTC)
        case Dialect.SQLITE:
            return to_micros(value)
        case _:
            assert_never(dialect)


class UtcDateTime(TypeDecorator[datetime]):
    impl = BigInteger
    cache_ok = True

    def load_dialect_impl(self, dialect: SqlAlchemyDialect) -> TypeEngine[Any]:
        match Dialect.of(dialect):
            case Dialect.POSTGRESQL:
                return dialect.type_descriptor(TIMESTAMP(timezone=True))
            case Dialect.SQLITE:
                return dialect.type_descriptor(BigInteger())
            case other:
                assert_never(other)

    def process_bind_param(self, value: datetime | None, dialect: SqlAlchemyDialect) -> Any:
        if value is None:
            return None
        return stored_time(Dialect.of(dialect), value)

    def process_result_value(self, value: Any, dialect: SqlAlchemyDialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, datetime):
            return value.astimezone(UTC)
        return from_micros(int(value))


def JsonValue() -> TypeEngine[Any]:
    return JSON().with_variant(JSONB(), "postgresql")


def TagList() -> TypeEngine[Any]:
    return JSON().with_variant(ARRAY(Text()), "postgresql")


def sqlite_value(value: Any) -> Any:
    """A Python value as tallyql stores it in SQLite (datetimes as microseconds, JSON as text)."""
    if isinstance(value, datetime):
        return to_micros(value)
    if isinstance(value, list | dict):
        return orjson.dumps(value).decode()
    return value
