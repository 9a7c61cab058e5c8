"""An event as the events table stores it: its values in `EVENT_COLUMNS` order, each column's
position in that record, and the checked event that carries one.

Ingest builds these (`ingest/validate.py`, `ingest/fastpath.py`); the writer, the batch
statements and the live bus read them. They live in storage because storage writes them, and a
lower layer never imports a higher one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tallyql.storage.tables import EVENT_COLUMNS

AT: dict[str, int] = {c: i for i, c in enumerate(EVENT_COLUMNS)}
"""Each column's position in a record."""
WORKSPACE, ID, TS = AT["workspace_id"], AT["id"], AT["ts"]
PROVIDER, MODEL = AT["provider"], AT["model"]
INPUT, OUTPUT, CACHE_READ, CACHE_WRITE, REASONING = (
    AT[c]
    for c in (
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "reasoning_tokens",
    )
)
COST, COST_SOURCE = AT["cost_nanousd"], AT["cost_source"]
DEPARTMENT, USER = AT["department"], AT["user_id"]
HAS_PAYLOAD, TAGS, METADATA, RECEIVED_AT = (
    AT["has_payload"],
    AT["tags"],
    AT["metadata"],
    AT["received_at"],
)


@dataclass(slots=True)
class ValidEvent:
    """A checked event: its events-table record and its payloads."""

    index: int
    record: list[Any]
    """The values of `EVENT_COLUMNS`, in order (a list: the workspace, the time of receipt and
    the cost are filled in once the event is accepted)."""
    request: Any = None
    response: Any = None
    has_payload: bool = False
    cost_usd: float | None = None
    token_accounting: str = "inclusive"

    @property
    def row(self) -> dict[str, Any]:
        """The record by column name (a new dict)."""
        return dict(zip(EVENT_COLUMNS, self.record, strict=True))

    @property
    def key(self) -> tuple[int, str]:
        """(workspace_id, id): unique among stored events."""
        record = self.record
        return record[WORKSPACE], record[ID]
