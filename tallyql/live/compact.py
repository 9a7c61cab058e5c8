"""The bus's form of a committed event: the columns that filters read and that live items
show, as plain JSON-ready values (timestamps as epoch microseconds).

`committed_at` (epoch seconds) is when the writer's transaction committed, stamped on the
process that committed it; receivers measure delivery latency against it.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter
from typing import Any

from tallyql.storage.ingest.record import AT, TS
from tallyql.storage.types import to_micros

LiveRow = dict[str, Any]

COLUMNS: tuple[str, ...] = (
    "workspace_id",
    "id",
    "kind",
    "status",
    "status_code",
    "error_type",
    "error_message",
    "policy_id",
    "policy_name",
    "user_id",
    "department",
    "api_key_id",
    "caller",
    "caller_ip",
    "agent_id",
    "agent_instance_id",
    "session_id",
    "trace_id",
    "run_id",
    "node",
    "provider",
    "model",
    "tool",
    "mcp_server",
    "gateway",
    "protocol",
    "request_type",
    "billing_mode",
    "is_byok",
    "cost_source",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost_nanousd",
    "latency_ms",
    "ttft_ms",
    "tags",
    "metadata",
)


ROW_KEYS: tuple[str, ...] = (*COLUMNS, "ts_us", "committed_at")
"""Every key of a live row, in the order the relay sends a row's values (live/relay.py)."""
_COLUMN_VALUES = itemgetter(*(AT[name] for name in COLUMNS))
"""The record's values of COLUMNS, in their order (one C call: the bus makes a row for every
committed event of a watched workspace, tens of thousands a second in a burst)."""


def compact_row(record: Sequence[Any], committed_at: float) -> LiveRow:
    """The live form of an event's record (`ValidEvent.record`, as the writer inserted it)."""
    # strict=False: the getter returns exactly one value per column (zip's check costs 15 %)
    out = dict(zip(COLUMNS, _COLUMN_VALUES(record), strict=False))
    out["ts_us"] = to_micros(record[TS])
    out["committed_at"] = committed_at
    out["is_byok"] = bool(out["is_byok"])
    out["tags"] = list(out["tags"] or ())
    out["metadata"] = out["metadata"] or {}
    return out
