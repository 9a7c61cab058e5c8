"""storage/dialect.py and storage/locks.py: each SQL difference gives the same value on both
databases (recomputed here in Python), and no code outside storage/ decides by dialect name."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    BigInteger,
    Float,
    Integer,
    bindparam,
    func,
    literal,
    select,
    text,
    true,
    type_coerce,
    union_all,
)

import tallyql
from tallyql.services import Services
from tallyql.storage import dialect as sqld
from tallyql.storage.database import Database
from tallyql.storage.dialect import Dialect
from tallyql.storage.locks import Lock, held_for_session, hold
from tallyql.storage.types import JsonValue, TagList, UtcDateTime, stored_time

PACKAGE = Path(tallyql.__file__).parent

NAME_CHECKS = re.compile(
    r"is_postgres|[\"'](postgresql|sqlite)[\"']|Dialect\.(POSTGRESQL|SQLITE)"
    r"|dialect\.name|get_backend_name|startswith\([\"'](postgres|sqlite)"
)
"""What a decision by dialect name looks like: the names themselves, the enum's members (a
`match` over them belongs in storage/), SQLAlchemy's dialect name, a URL's prefix."""


def _python_files(root: Path, skip: tuple[str, ...]) -> list[Path]:
    return [p for p in sorted(root.rglob("*.py")) if not any(part in skip for part in p.parts)]


def test_no_dialect_names_outside_storage() -> None:
    """engine, live, schema, ingest and the feature packages ask `Dialect`'s named properties
    and functions; only storage/ (outside its migrations, which are frozen) names a dialect."""
    found = [
        f"{path.relative_to(PACKAGE)}:{n}: {line.strip()}"
        for path in _python_files(PACKAGE, ("storage",))
        for n, line in enumerate(path.read_text().splitlines(), start=1)
        if NAME_CHECKS.search(line)
    ]
    assert found == []


def test_advisory_locks_taken_one_way() -> None:
    """Every advisory lock is a `Lock` taken through storage/locks.py."""
    found = [
        f"{path.relative_to(PACKAGE)}:{n}"
        for path in _python_files(PACKAGE, ("migrations",))
        if path.name != "locks.py"
        for n, line in enumerate(path.read_text().splitlines(), start=1)
        if "advisory" in line and "pg_" in line
    ]
    assert found == []


def test_lock_ids_distinct() -> None:
    assert len({int(lock) for lock in Lock}) == len(Lock)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("postgresql://u@h/db", Dialect.POSTGRESQL),
        ("postgres://u@h/db", Dialect.POSTGRESQL),
        ("postgresql+asyncpg://u@h/db", Dialect.POSTGRESQL),
        ("sqlite:///x.db", Dialect.SQLITE),
        ("sqlite+aiosqlite:///:memory:", Dialect.SQLITE),
        ("sqlite", Dialect.SQLITE),
        (Dialect.POSTGRESQL, Dialect.POSTGRESQL),
    ],
)
def test_dialect_of_url(source: str, expected: Dialect) -> None:
    assert Dialect.of(source) is expected


def test_properties_answer_for_every_dialect() -> None:
    names = [n for n, v in vars(Dialect).items() if isinstance(v, property)]
    assert len(names) >= 8
    for dialect in Dialect:
        for name in names:
            assert isinstance(getattr(dialect, name), bool | str | None)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    try:
        yield database
    finally:
        await database.reader.dispose()
        await database.writer.dispose()


async def _one(db: Database, expr: Any) -> Any:
    async with db.read() as conn:
        return (await conn.execute(select(expr).select_from(TIMES))).scalar_one()


T0 = datetime(2026, 11, 20, 9, 30, 15, 250_000, tzinfo=UTC)
T1 = T0 + timedelta(hours=5, microseconds=123_457)


TIMES = select(literal(T0, UtcDateTime()).label("t0"), literal(T1, UtcDateTime()).label("t1"))
TIMES = TIMES.subquery("times")
"""Two stored times, as columns (the functions read stored columns, not parameters)."""


async def test_dialect_of_connection(db: Database, db_kind: str) -> None:
    assert db.dialect is Dialect(db_kind)
    async with db.read() as conn:
        assert Dialect.of(conn) is db.dialect
    assert Dialect.of(db.writer) is db.dialect


async def test_time_arithmetic(db: Database) -> None:
    d = db.dialect
    t0, t1 = TIMES.c.t0, TIMES.c.t1
    assert await _one(db, sqld.epoch_seconds_int(d, t0)) == int(T0.timestamp())
    micros = (T1 - T0) // timedelta(microseconds=1)
    assert await _one(db, sqld.micros_between(d, t0, t1)) == micros
    along = sqld.time_along(d, t0, t1, literal(0.25, Float))
    got = await _one(db, type_coerce(along, UtcDateTime()))
    assert abs(got - (T0 + (T1 - T0) * 0.25)) <= timedelta(microseconds=1)
    assert await _one(db, sqld.floor_nonnegative(d, literal(2.75, Float))) == 2
    assert await _one(db, sqld.floor_nonnegative(d, literal(3.0, Float))) == 3


async def test_integer_sum(db: Database) -> None:
    summed = sqld.as_int(db.dialect, func.sum(literal(2**40, BigInteger)))
    got = await _one(db, summed)
    assert got == 2**40
    assert isinstance(got, int)


async def test_json_text(db: Database) -> None:
    doc = literal({"s": "x y", "n": 3, "f": 2.5, "t": True, "no": False}, JsonValue())
    for key, expected in [("s", "x y"), ("n", "3"), ("f", "2.5"), ("t", "true"), ("no", "false")]:
        assert await _one(db, sqld.json_text(db.dialect, doc, key)) == expected, key
    assert await _one(db, sqld.json_text(db.dialect, doc, "absent")) is None


async def test_tags(db: Database) -> None:
    tags = literal(["a", "b", "c"], TagList())
    assert await _one(db, sqld.tags_overlap(db.dialect, tags, ["z", "b"])) in (True, 1)
    assert await _one(db, sqld.tags_overlap(db.dialect, tags, ["z"])) in (False, 0)
    each, tag = sqld.tag_rows(db.dialect, tags)
    async with db.read() as conn:
        rows = (await conn.execute(select(tag).select_from(each).order_by(tag))).scalars()
        assert list(rows) == ["a", "b", "c"]
    joins, expr = sqld.tag_join_sql(db.dialect, "src.tags")
    param = "CAST(:tags AS text[])" if db.dialect is Dialect.POSTGRESQL else ":tags"
    sql = text(f"SELECT {expr} FROM (SELECT {param} AS tags) AS src {joins} ORDER BY 1")
    for value, expected in [(["b", "a"], ["a", "b"]), ([], [""])]:
        bound = sql.bindparams(bindparam("tags", value, type_=TagList()))
        async with db.read() as conn:
            assert list((await conn.execute(bound)).scalars()) == expected


async def test_local_settings(db: Database) -> None:
    settings = sqld.local_settings(db.dialect, [("work_mem", "64MB")])
    if not settings:
        assert db.dialect is Dialect.SQLITE  # SQLite has no planner settings
        return
    async with db.write() as conn:
        await conn.execute(select(*settings))
        assert (await conn.execute(text("SHOW work_mem"))).scalar_one() == "64MB"


async def test_text_sql(db: Database) -> None:
    d = db.dialect
    ts = stored_time(d, T1)
    cast_ts = "CAST(:ts AS timestamptz)" if d is Dialect.POSTGRESQL else ":ts"
    async with db.write() as conn:

        async def scalar(sql: str, **params: Any) -> Any:
            return (await conn.execute(text(f"SELECT {sql}"), params)).scalar_one()

        epoch = int(T1.timestamp())
        got = await scalar(sqld.period_sql(d, cast_ts, 3600), ts=ts)
        assert got == epoch // 3600 * 3600
        assert await scalar(sqld.day_of_sql(d, cast_ts), ts=ts) == epoch // 86_400
        greatest, least = sqld.greatest_least_sql(d)
        for a, b, hi, lo in [("2", "5", 5, 2), ("3", "NULL", 3, 3), ("NULL", "NULL", None, None)]:
            assert await scalar(greatest.format(a=a, b=b)) == hi
            assert await scalar(least.format(a=b, b=a)) == lo
        obj = await scalar(sqld.json_object_sql(d, "'a', 1, 'b', NULL, 'c', 'x'"))
        assert (json.loads(obj) if isinstance(obj, str) else obj) == {"a": 1, "b": None, "c": "x"}
        await conn.execute(text("CREATE TEMP TABLE dialect_rows (x integer)"))
        await conn.execute(text("INSERT INTO dialect_rows (x) VALUES (1), (2), (3), (4), (5)"))
        delete = text(sqld.limited_delete_sql(d, "dialect_rows", "x > 1"))
        assert (await conn.execute(delete, {"n": 2})).rowcount == 2
        left = (await conn.execute(text("SELECT x FROM dialect_rows ORDER BY x"))).scalars()
        remaining = list(left)
        assert len(remaining) == 3 and remaining[0] == 1
        await conn.execute(text("DROP TABLE dialect_rows"))


async def test_exact_quantile(db: Database) -> None:
    values = [7, 1, 9, 3, 5, 11, 2]
    source = union_all(*(select(literal(v, Integer).label("v")) for v in values)).cte("src")
    n = select(func.count().label("n")).select_from(source).cte("n")
    ordered = sorted(values)
    for q in (0.0, 0.5, 0.9, 1.0):
        rank = int(q * (len(values) - 1))
        low = sqld.exact_quantile(db.dialect, source, n.c.n, "v", q)
        high = sqld.exact_quantile(db.dialect, source, n.c.n, "v", q, upper=True)
        query = select(low, high).select_from(n)
        if db.dialect.arrays:  # an aggregate over the rows, beside their one-row count
            query = select(low, high).select_from(n.join(source, true()))
        async with db.read() as conn:
            got = (await conn.execute(query)).one()
        assert tuple(got) == (ordered[rank], ordered[min(rank + 1, len(values) - 1)]), q


async def test_collect(services: Services) -> None:
    db = services.db  # migrated: PostgreSQL's collecting aggregate comes from a migration
    values = [4, 8, 1, 6]
    src = union_all(*(select(literal(v, Integer).label("v")) for v in values)).subquery("src")
    gathered = select(sqld.collect(db.dialect, src.c.v).label("c")).subquery("g")
    if not db.dialect.arrays:
        got = await _one(db, select(gathered.c.c).scalar_subquery())
        assert sorted(json.loads(got)) == sorted(values)
        return
    k = literal(1, Integer)
    second = sqld.nth_collected(db.dialect, gathered.c.c, None, k)
    from_low = sqld.nth_collected(db.dialect, gathered.c.c, 5, literal(0, Integer), width=2)
    async with db.read() as conn:
        got = (await conn.execute(select(second, from_low).select_from(gathered))).one()
    assert got[0] == sorted(values)[1]
    assert list(got[1]) == [6, 8]


async def test_locks(db: Database) -> None:
    async with db.write() as first:
        assert await hold(first, Lock.COMPACTION)
        assert await hold(first, Lock.METRIC_WRITES, 42)
        if db.dialect.advisory_locks:  # (SQLite's one writer connection is taken)
            async with db.writer.connect() as other, other.begin():
                assert not await hold(other, Lock.COMPACTION, wait=False)
                assert await hold(other, Lock.REPRICE, wait=False)  # another lock
                assert not await hold(other, Lock.METRIC_WRITES, 42, wait=False)
                assert await hold(other, Lock.METRIC_WRITES, 43, wait=False)  # another key
    async with db.write() as again:  # the transaction's end released it
        assert await hold(again, Lock.COMPACTION, wait=False)
    async with held_for_session(db, Lock.RETENTION) as held:
        assert held
        if db.dialect.advisory_locks:
            async with held_for_session(db, Lock.RETENTION) as second:
                assert not second
    async with held_for_session(db, Lock.RETENTION) as held:
        assert held
