"""Daily partitions of `events` and `payloads` on PostgreSQL.

The writer asks for the days a batch touches before it opens the batch's transaction (creating
a partition locks the parent table, so it never happens inside an ingest transaction). The
retention job drops whole expired days.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from tallyql.storage.locks import Lock, hold

PARTITIONED_TABLES = ("events", "payloads")


def partition_name(table: str, day: date) -> str:
    return f"{table}_p{day:%Y%m%d}"


def day_of_partition(name: str) -> date | None:
    _, _, suffix = name.rpartition("_p")
    try:
        return datetime.strptime(suffix, "%Y%m%d").replace(tzinfo=UTC).date()
    except ValueError:
        return None


class PartitionManager:
    """Knows which day partitions exist and creates missing ones (asyncpg connection)."""

    def __init__(self) -> None:
        self._known: set[date] = set()
        self._loaded = False

    async def existing_days(self, conn: Any) -> set[date]:
        rows = await conn.fetch(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'events'"
        )
        days = {day_of_partition(r["relname"]) for r in rows}
        return {d for d in days if d is not None}

    def knows(self, days: set[date]) -> bool:
        """Whether every day's partition is known to exist (nothing to create)."""
        return self._loaded and days <= self._known

    async def ensure(self, conn: Any, days: set[date]) -> None:
        if not self._loaded:
            self._known = await self.existing_days(conn)
            self._loaded = True
        missing = sorted(days - self._known)
        if not missing:
            return
        async with conn.transaction():
            await hold(conn, Lock.PARTITIONS)
            existing = await self.existing_days(conn)
            for day in missing:
                if day in existing:
                    continue
                start = datetime(day.year, day.month, day.day, tzinfo=UTC)
                end = start + timedelta(days=1)
                for table in PARTITIONED_TABLES:
                    await conn.execute(
                        f"CREATE TABLE IF NOT EXISTS {partition_name(table, day)} "
                        f"PARTITION OF {table} FOR VALUES FROM ('{start.isoformat()}') "
                        f"TO ('{end.isoformat()}')"
                    )
        self._known |= set(missing)

    def forget(self, days: set[date]) -> None:
        """Called after partitions were dropped."""
        self._known -= days
