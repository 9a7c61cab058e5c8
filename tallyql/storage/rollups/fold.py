"""Folds: one aggregate of the new events, and the summary tables fed from it.

Aggregating a batch is the costly part of keeping summaries (a scan of every new event and a
dozen sums per row). Summary tables whose keys are a subset of another's, and the day grain of
an hour table, are re-aggregated from that aggregate's far fewer rows instead: sums of sums and
maxima of maxima give the same rows as aggregating the events, so the result is exact.

A fold's aggregate can be applied at once (`statements`) or staged in a delta table
(`stage_statement`) and applied later (`compact_statement`): the merges are associative and
commute, so any number of staged aggregates fold into the same rows.

On PostgreSQL a fold is one statement: the aggregate is a materialised CTE and each summary an
`INSERT ... ON CONFLICT` CTE over it (rows in key order, so concurrent writers never deadlock).
SQLite has no data-modifying CTEs: the aggregate goes into a temporary table first, keyed by
the aggregate's keys, each source row upserted into it (`_sqlite_statements`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import assert_never

from tallyql.storage.dialect import Dialect, greatest_least_sql
from tallyql.storage.rollups.upsert import Aggregate, AggregateUpsert


@dataclass(frozen=True)
class Fold:
    name: str
    aggregate: Aggregate
    """Over the source rows (`src`)."""
    targets: tuple[AggregateUpsert, ...]
    """Over the aggregate's rows: their expressions read its columns as `src.<column>`."""
    relation: Callable[[str], str] | None = None
    """What the aggregate reads, given the source relation (default: the source itself)."""

    @property
    def temp_table(self) -> str:
        return f"_fold_{self.name}"

    def select(self, source: str) -> str:
        """The aggregate of `source`."""
        relation = source if self.relation is None else self.relation(source)
        return self.aggregate.select(relation)

    def _apply(self, dialect: Dialect, rows: str) -> str:
        """PostgreSQL: CTEs upserting every target from the CTE named `rows`."""
        return ", ".join(f"t{i} AS ({t.sql(dialect, rows)})" for i, t in enumerate(self.targets))

    def statements(self, dialect: Dialect, source: str) -> list[str]:
        """Aggregate `source` and fold the result into every target now."""
        match dialect:
            case Dialect.POSTGRESQL:  # one statement: data-modifying CTEs
                agg = f"agg AS MATERIALIZED ({self.select(source)})"
                return [f"WITH {agg}, {self._apply(dialect, 'agg')} SELECT 1"]
            case Dialect.SQLITE:  # a CTE is read by one statement only: a temp table
                return self._sqlite_statements(source)
            case _:
                assert_never(dialect)

    def _sqlite_statements(self, source: str) -> list[str]:
        """The aggregate built in a temporary table keyed like it, by upserting each source
        row into it (a B-tree lookup per row: `GROUP BY` sorted every row by all of the keys
        first, the costlier part of a batch's wide aggregates, bench/sqlite_writer_steps.py
        --days 30); each target's rows likewise from it, then upserted into the target as they
        are (a target keyed like the aggregate takes its rows directly). The rows come out the
        same, floats to the bit: each key's rows are added in the order the source holds
        them, as `SUM` over the sorted rows added them (every rollup table after the same
        seeded load, before and after; tests/test_sum_rollups_writer.py compares them with
        raw events)."""
        relation = source if self.relation is None else self.relation(source)
        temp = self.temp_table
        out = _keyed_aggregate(temp, self.aggregate, relation)
        for target in self.targets:
            if target.copies(self.aggregate):
                out.append(target.sql(Dialect.SQLITE, f"temp.{temp}", grouped=False))
            else:
                staged = f"_fold_into_{target.table}"
                out += _keyed_aggregate(staged, target, f"temp.{temp}")
                out.append(target.copy().sql(Dialect.SQLITE, f"temp.{staged}", grouped=False))
        return out

    def stage_statement(self, source: str, delta: str) -> str:
        """Append the aggregate of `source` to the delta table (a plain insert: no row locks)."""
        return f"INSERT INTO {delta} ({', '.join(self.aggregate.columns)}) {self.select(source)}"

    def compact_statement(self, delta: str, where: str = "") -> str:
        """PostgreSQL: move every row of the delta table (those matching `where`, a condition
        on its columns) into the targets, in one statement (rows staged meanwhile stay for
        the next run; a concurrent compaction skips the rows this one deletes). Returns the
        number of rows moved."""
        columns = ", ".join(self.aggregate.columns)
        condition = f" WHERE {where}" if where else ""
        moved = f"moved AS (DELETE FROM {delta}{condition} RETURNING {columns})"
        upserts = self._apply(Dialect.POSTGRESQL, "moved")
        return f"WITH {moved}, {upserts} SELECT count(*) FROM moved"


def _keyed_aggregate(temp: str, aggregate: Aggregate, source: str) -> list[str]:
    """SQLite: statements leaving the aggregate of `source` in the temporary table `temp`,
    keyed by the aggregate's keys: each row of `source` upserted into it in turn ("first"
    columns keep the smallest, as MIN)."""
    columns, keys = ", ".join(aggregate.columns), ", ".join(aggregate.key_columns)
    _, least = greatest_least_sql(Dialect.SQLITE)
    sets = aggregate.merges(Dialect.SQLITE, temp)
    sets += [
        f"{c} = " + least.format(a=f"{temp}.{c}", b=f"excluded.{c}") for c, _ in aggregate.firsts
    ]
    return [
        f"CREATE TEMP TABLE IF NOT EXISTS {temp} ({columns}, PRIMARY KEY ({keys})) WITHOUT ROWID",
        f"DELETE FROM temp.{temp}",
        f"INSERT INTO temp.{temp} ({columns}) {aggregate.row_select(source)} "
        f"ON CONFLICT ({keys}) DO UPDATE SET {', '.join(sets)}",
    ]
