"""Aggregating upserts: `INSERT ... SELECT ... GROUP BY ... ON CONFLICT DO UPDATE`.

The database aggregates a batch of events (staged in a temporary table, or a range of the
events table when rebuilding) and folds the result into a summary table: sums add, maxima and
minima merge, "first" columns keep the first non-null value. These merges commute, so
concurrent writers stay exact; rows go in key order so two PostgreSQL writers never deadlock.
The same merges are associative, so a summary may also be folded from an aggregate of the
source rather than from the source itself (see `fold.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tallyql.storage.dialect import Dialect, greatest_least_sql

Expr = tuple[str, str]  # (target column, SQL expression over the source rows)


@dataclass(frozen=True, kw_only=True)
class Aggregate:
    """`SELECT keys, SUM(..), MAX(..), .. FROM source GROUP BY keys`, with named columns."""

    keys: tuple[Expr, ...]
    sums: tuple[Expr, ...] = ()
    maxes: tuple[Expr, ...] = ()
    mins: tuple[Expr, ...] = ()
    firsts: tuple[Expr, ...] = ()
    where: str = "1 = 1"
    joins: str = ""
    """Extra FROM items after the source (e.g. a lateral unnest of tags)."""

    @property
    def columns(self) -> list[str]:
        return [c for c, _ in (*self.keys, *self.sums, *self.maxes, *self.mins, *self.firsts)]

    @property
    def key_columns(self) -> list[str]:
        return [c for c, _ in self.keys]

    def select(self, source: str, ordered: bool = False, extra: Sequence[str] = ()) -> str:
        """The aggregate of `source` (`ordered`: its rows in key order; `extra`: more aggregate
        columns, SQL with their names, after the others)."""
        selects = [*(f"{e} AS {c}" for c, e in self.keys)]
        selects += [f"SUM({e}) AS {c}" for c, e in self.sums]
        selects += [f"MAX({e}) AS {c}" for c, e in self.maxes]
        selects += [f"MIN({e}) AS {c}" for c, e in self.mins]
        selects += [f"MIN({e}) AS {c}" for c, e in self.firsts]
        selects += extra
        group_by = ", ".join(str(i) for i in range(1, len(self.keys) + 1))
        order = f" ORDER BY {group_by}" if ordered else ""
        return (
            f"SELECT {', '.join(selects)} FROM {source} AS src {self.joins} WHERE {self.where} "
            f"GROUP BY {group_by}{order}"
        )

    def row_select(self, source: str) -> str:
        """Each row of `source` with the aggregate's expressions, not aggregated."""
        exprs = (*self.keys, *self.sums, *self.maxes, *self.mins, *self.firsts)
        return (
            f"SELECT {', '.join(f'{e} AS {c}' for c, e in exprs)} "
            f"FROM {source} AS src {self.joins} WHERE {self.where}"
        )

    def merges(self, dialect: Dialect, table: str) -> list[str]:
        """SET clauses folding a new row (`excluded`) into the stored row of `table` with its
        key: sums add, maxima and minima merge ("first" columns are the caller's)."""
        greatest, least = greatest_least_sql(dialect)
        sets = [f"{c} = {table}.{c} + excluded.{c}" for c, _ in self.sums]
        sets += [
            f"{c} = " + greatest.format(a=f"{table}.{c}", b=f"excluded.{c}") for c, _ in self.maxes
        ]
        sets += [
            f"{c} = " + least.format(a=f"{table}.{c}", b=f"excluded.{c}") for c, _ in self.mins
        ]
        return sets


@dataclass(frozen=True, kw_only=True)
class AggregateUpsert(Aggregate):
    table: str

    def copies(self, aggregate: Aggregate) -> bool:
        """Whether this upsert's aggregate of `aggregate`'s rows is those rows as they are:
        its keys are the aggregate's own columns (so each of its groups is one row) and each
        measure aggregates the aggregate's column of the same name."""
        same = [(c, f"src.{c}") for c in aggregate.key_columns]
        return (
            sorted(self.keys) == sorted(same)
            and self.where == "1 = 1"
            and not self.joins
            and all(e == f"src.{c}" for c, e in (*self.sums, *self.maxes, *self.mins, *self.firsts))
        )

    def copy(self) -> AggregateUpsert:
        """The upsert of rows that already hold this upsert's columns, one row per key."""

        def own(exprs: tuple[Expr, ...]) -> tuple[Expr, ...]:
            return tuple((c, f"src.{c}") for c, _ in exprs)

        return AggregateUpsert(
            table=self.table,
            keys=own(self.keys),
            sums=own(self.sums),
            maxes=own(self.maxes),
            mins=own(self.mins),
            firsts=own(self.firsts),
        )

    def sql(self, dialect: Dialect, source: str, returning: str = "", grouped: bool = True) -> str:
        """The upsert of the aggregate of `source` (`returning`: PostgreSQL columns of the
        rows written). `grouped=False`: of `source`'s rows as they are, which must be one per
        key with every measure in its column (`copies`): the same rows, without a sort."""
        t = self.table
        sets = self.merges(dialect, t)
        sets += [f"{c} = COALESCE({t}.{c}, excluded.{c})" for c, _ in self.firsts]
        rows = self.select(source, ordered=True) if grouped else self.row_select(source)
        return (
            f"INSERT INTO {t} ({', '.join(self.columns)}) {rows} "
            f"ON CONFLICT ({', '.join(self.key_columns)}) DO UPDATE SET {', '.join(sets)}"
            + (f" RETURNING {returning}" if returning else "")
        )
