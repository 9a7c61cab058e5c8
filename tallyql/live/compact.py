"""The bus's form of a committed event: the columns that filters read and that live items
show, as plain JSON-ready values (timestamps as epoch microseconds).

A live row is a named tuple (`LiveRow`): the bus makes one for every committed event of a
watched workspace, tens of thousands a second in a burst, and a replica makes one for every
row another replica relays. Built from a tuple of values in one C call, a row costs 1.1 us
where a dict of the same 42 keys cost 2.5; a relayed row, whose values arrive as a JSON array
in `ROW_KEYS` order, costs 1.1 us with its parsing instead of 2.7 (bench/live.py with two
replicas spends them on every row of a burst).

`committed_at` (epoch seconds) is when the writer's transaction committed, stamped on the
process that committed it; receivers measure delivery latency against it.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter
from typing import Any, NamedTuple

from tallyql.storage.ingest.record import AT, TS
from tallyql.storage.tables import EVENT_TOKEN_COLUMNS
from tallyql.storage.types import to_micros


class LiveRow(NamedTuple):
    """A committed event as live subscribers see it (the events table's columns, less the
    payload-sized and internal ones)."""

    workspace_id: int
    id: str
    kind: str
    status: str
    status_code: int | None
    error_type: str | None
    error_message: str | None
    policy_id: str | None
    policy_name: str | None
    user_id: str | None
    department: str | None
    api_key_id: str | None
    caller: str | None
    caller_ip: str | None
    agent_id: str | None
    agent_instance_id: str | None
    session_id: str | None
    trace_id: str | None
    run_id: str | None
    node: str | None
    provider: str | None
    model: str | None
    tool: str | None
    mcp_server: str | None
    gateway: str | None
    protocol: str | None
    request_type: str | None
    billing_mode: str | None
    is_byok: bool
    cost_source: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    cost_nanousd: int
    latency_ms: float | None
    ttft_ms: float | None
    tags: tuple[str, ...]
    metadata: dict[str, Any]
    ts_us: int
    """The event's timestamp, epoch microseconds."""
    committed_at: float
    """When its batch committed, epoch seconds (on the process that committed it)."""


ROW_KEYS: tuple[str, ...] = LiveRow._fields
"""Every field of a live row, in the order the relay sends a row's values (live/relay.py):
this order is the relay's wire format, which replicas of different versions share."""
COLUMNS: tuple[str, ...] = ROW_KEYS[:-2]
"""The fields read from the event's record as they are (but `is_byok`, `tags`, `metadata`)."""
INDEX: dict[str, int] = {name: i for i, name in enumerate(ROW_KEYS)}
"""Each field's position in a row."""
_COLUMN_VALUES = itemgetter(*(AT[name] for name in COLUMNS))
"""The record's values of COLUMNS, in their order (one C call)."""
_BYOK, _TAGS, _METADATA = INDEX["is_byok"], INDEX["tags"], INDEX["metadata"]
COUNTS: tuple[str, ...] = (*EVENT_TOKEN_COLUMNS, "cost_nanousd")
"""The row's token counts and cost (nano-USD): integers, never null."""
_ABSENT: dict[str, Any] = dict.fromkeys(COUNTS, 0)
"""What a field absent from a relayed mapping stands for, when not None."""
_new_row = tuple.__new__
"""A row from its values, without NamedTuple's per-field checks (`LiveRow._make` is a call more)."""


def compact_row(record: Sequence[Any], committed_at: float) -> LiveRow:
    """The live form of an event's record (`ValidEvent.record`, as the writer inserted it)."""
    values = list(_COLUMN_VALUES(record))
    values.append(to_micros(record[TS]))
    values.append(committed_at)
    return _normalised(values)


def row_of_values(values: Sequence[Any]) -> LiveRow:
    """A row from its values in `ROW_KEYS` order (as relayed)."""
    if len(values) != len(ROW_KEYS):
        raise ValueError(f"a live row has {len(ROW_KEYS)} values, not {len(values)}")
    values = values if type(values) is list else list(values)  # as parsed: changed in place
    values[_TAGS] = tuple(values[_TAGS] or ())  # a JSON array
    return _new_row(LiveRow, values)


def row_of_mapping(row: dict[str, Any]) -> LiveRow:
    """A row from a mapping of its fields (as replicas of earlier versions relayed it; a
    field they did not have is absent: None, 0 for the counts and the cost, which are never
    null, and empty for the tags and metadata)."""
    return _normalised([row.get(name, _ABSENT.get(name)) for name in ROW_KEYS])


def _normalised(values: list[Any]) -> LiveRow:
    """The row of `ROW_KEYS` values as stored: BYOK as a boolean (SQLite stores 0 and 1), no
    tags or metadata as empty ones. Tags are a tuple: no tags is then the one empty tuple, and
    a row of strings and numbers no object of its own for the garbage collector to walk."""
    values[_BYOK] = bool(values[_BYOK])
    values[_TAGS] = tuple(values[_TAGS] or ())
    values[_METADATA] = values[_METADATA] or {}
    return _new_row(LiveRow, values)
