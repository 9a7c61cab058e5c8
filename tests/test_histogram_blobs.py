"""Histogram blobs: encoding, merging and quantiles agree with plain dictionaries, and the
migration from bucket rows to blobs keeps every count."""

from __future__ import annotations

import importlib
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from tallyql import histogram, sketch
from tallyql.services import Services
from tallyql.storage.dialect import Dialect

MIGRATION = importlib.import_module("tallyql.storage.migrations.versions.0008_histogram_blobs")

bucket_counts = st.dictionaries(
    st.integers(min_value=-32768, max_value=32767),
    st.integers(min_value=1, max_value=2**40),
    max_size=60,
)


def _blob(counts: dict[int, int]) -> bytes | None:
    keys = sorted(counts)
    return histogram.encode(
        np.asarray(keys, np.int16), np.asarray([counts[k] for k in keys], np.uint64)
    )


def _as_dict(blob: bytes | None) -> dict[int, int]:
    buckets, counts = histogram.decode(blob)
    return {int(b): int(c) for b, c in zip(buckets, counts, strict=True)}


@given(bucket_counts)
def test_round_trip(counts: dict[int, int]) -> None:
    blob = _blob(counts)
    assert (blob is None) == (not counts)
    assert _as_dict(blob) == counts


@given(st.lists(bucket_counts, max_size=6))
def test_merge_adds_counts_exactly(parts: list[dict[int, int]]) -> None:
    expected: Counter[int] = Counter()
    for part in parts:
        expected.update(part)
    merged = histogram.merge_blobs(_blob(p) for p in parts)
    assert _as_dict(merged) == dict(expected)
    assert merged == _blob(dict(expected))  # canonical: equal histograms, equal blobs


@settings(max_examples=200)
@given(
    st.lists(bucket_counts, min_size=1, max_size=4),
    st.lists(st.tuples(st.integers(-200, 200), st.integers(1, 50)), max_size=30),
    st.lists(st.sampled_from([0.0, 0.01, 0.5, 0.95, 0.99, 1.0]), min_size=1, max_size=4),
)
def test_quantiles_match_the_sketch(
    blobs: list[dict[int, int]], raw: list[tuple[int, int]], qs: list[float]
) -> None:
    accumulator = histogram.Accumulator()
    expected: Counter[int] = Counter()
    for part in blobs:
        accumulator.add_blob(_blob(part))
        expected.update(part)
    for bucket, count in raw:
        accumulator.add(bucket, count)
        expected[bucket] += count
    found = accumulator.quantiles(qs)
    for q in qs:
        assert found.get(q) == sketch.quantile(dict(expected), q)


def test_an_empty_accumulator_has_no_quantiles() -> None:
    assert histogram.Accumulator().quantiles([0.5]) == {}


def test_a_torn_blob_is_refused() -> None:
    with pytest.raises(ValueError, match="whole entries"):
        histogram.decode(b"\x00" * 11)


async def test_migration_turns_bucket_rows_into_blobs(services: Services) -> None:
    rows = [
        (1, 3600, "openai", "m1", 5, 2, 0),
        (1, 3600, "openai", "m1", 7, 1, 4),
        (1, 3600, "openai", "m2", -3, 0, 9),
        (2, 7200, "x", "", 5, 6, 0),
    ]
    keys = ("workspace_id", "period", "provider", "model")
    async with services.db.write() as conn:
        await conn.execute(
            text(
                "CREATE TABLE test_hist_old (workspace_id INTEGER, period BIGINT, provider TEXT, "
                "model TEXT, bucket SMALLINT, latency_n BIGINT, ttft_n BIGINT)"
            )
        )
        await conn.execute(
            text(
                "CREATE TABLE test_hist_new (workspace_id INTEGER, period BIGINT, provider TEXT, "
                f"model TEXT, latency {_binary(services)}, ttft {_binary(services)})"
            )
        )
        await conn.execute(
            text("INSERT INTO test_hist_old VALUES (:w, :p, :pr, :m, :b, :l, :t)"),
            [dict(zip(("w", "p", "pr", "m", "b", "l", "t"), r, strict=True)) for r in rows],
        )
        await conn.run_sync(
            lambda c: MIGRATION._convert(c, "test_hist_old", "test_hist_new", keys, 0, 10_000)
        )
        got = (await conn.execute(text("SELECT * FROM test_hist_new ORDER BY 1, 2, 3, 4"))).all()
        await conn.execute(text("DROP TABLE test_hist_old"))
        await conn.execute(text("DROP TABLE test_hist_new"))
    decoded = [
        (*r[:4], _as_dict(r[4] and bytes(r[4])), _as_dict(r[5] and bytes(r[5]))) for r in got
    ]
    assert decoded == [
        (1, 3600, "openai", "m1", {5: 2, 7: 1}, {7: 4}),
        (1, 3600, "openai", "m2", {}, {-3: 9}),
        (2, 7200, "x", "", {5: 6}, {}),
    ]
    assert got[1][4] is None  # no latency at all: NULL, not an empty blob


def _binary(services: Services) -> str:
    return "BYTEA" if services.db.dialect is Dialect.POSTGRESQL else "BLOB"


@given(st.lists(st.tuples(st.integers(0, 4), bucket_counts), max_size=12))
def test_combined_entries_sum_each_key(parts: list[tuple[int, dict[int, int]]]) -> None:
    """Blobs decoded at once and their entries summed per key (as compaction merges)."""
    expected: list[Counter[int]] = [Counter() for _ in range(5)]
    for k, counts in parts:
        expected[k].update(counts)
    owners, buckets, counts = histogram.decode_many([_blob(c) for _, c in parts])
    keys = np.array([k for k, _ in parts], np.int64)[owners]
    blobs = histogram.combine_entries(keys, buckets, counts, 5)
    assert [_as_dict(b) for b in blobs] == [dict(e) for e in expected]
    assert blobs == [_blob(dict(e)) for e in expected]
