"""The one ingest pipeline behind every door (REST, GraphQL, OTLP, demo loader).

validate -> normalise -> price -> writer (group commit) -> answer with what was accepted,
what was a duplicate of an event already stored, and what was rejected and why.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from tallyql.clock import clock
from tallyql.ingest import fastpath
from tallyql.ingest.body import NDJSON_TYPES, parse_events
from tallyql.ingest.pricing import Pricer
from tallyql.ingest.validate import (
    HAS_PAYLOAD,
    RECEIVED_AT,
    WORKSPACE,
    FieldError,
    IngestResult,
    ValidEvent,
    validate_event,
)
from tallyql.storage.writer import Writer


class IngestService:
    def __init__(
        self,
        writer: Writer,
        pricer: Pricer,
        observer: Callable[[IngestResult], None] | None = None,
    ) -> None:
        self.writer = writer
        self.pricer = pricer
        self._observer = observer

    def prepare(
        self, workspace_id: int, raw_events: Sequence[Any], now: datetime | None = None
    ) -> tuple[list[ValidEvent], list[FieldError]]:
        """Validate, normalise and price; the valid events and the errors of the others."""
        now = now or clock.now()
        valid: list[ValidEvent] = []
        errors: list[FieldError] = []
        for index, raw in enumerate(raw_events):
            checked = validate_event(raw, index, now)
            if isinstance(checked, list):
                errors.extend(checked)
                continue
            valid.append(self._finish(checked, workspace_id, now))
        return valid, errors

    def prepare_fast(
        self, workspace_id: int, structs: Sequence[Any], now: datetime | None = None
    ) -> list[ValidEvent]:
        """`prepare` for structs that msgspec already checked; SlowPath when one needs the
        detailed validator."""
        now = now or clock.now()
        return [
            self._finish(fastpath.to_valid(s, i, now), workspace_id, now)
            for i, s in enumerate(structs)
        ]

    def _finish(self, checked: ValidEvent, workspace_id: int, now: datetime) -> ValidEvent:
        record = checked.record
        record[WORKSPACE] = workspace_id
        record[RECEIVED_AT] = now
        record[HAS_PAYLOAD] = checked.has_payload
        self.pricer.apply(workspace_id, record, checked.cost_usd)
        return checked

    async def ingest_body(
        self, workspace_id: int, body: bytes, content_type: str | None, max_events: int
    ) -> IngestResult:
        """Ingest a request body: the msgspec fast path when the whole batch is valid, else
        the detailed path with per-event errors. BodyError when the body is unreadable."""
        media = (content_type or "").split(";")[0].strip().lower()
        try:
            structs = fastpath.decode_body(body, media in NDJSON_TYPES)
            if len(structs) > max_events:
                raise fastpath.SlowPath
            valid = self.prepare_fast(workspace_id, structs)
        except fastpath.SlowPath:
            parsed = parse_events(body, content_type, max_events)
            return await self.ingest(workspace_id, parsed.events, parsed.errors)
        return await self._store(valid, [])

    async def ingest(
        self,
        workspace_id: int,
        raw_events: Sequence[Any],
        earlier_errors: Sequence[FieldError] = (),
    ) -> IngestResult:
        """Store the valid events (returns after commit); `earlier_errors` come from parsing."""
        bad_indexes = {e.index for e in earlier_errors}
        candidates = [None if i in bad_indexes else raw for i, raw in enumerate(raw_events)]
        valid, errors = self.prepare(workspace_id, candidates)
        errors = sorted(
            [*earlier_errors, *(e for e in errors if e.index not in bad_indexes)],
            key=lambda e: e.index,
        )
        return await self._store(valid, errors)

    async def _store(self, valid: list[ValidEvent], errors: list[FieldError]) -> IngestResult:
        flags = await self.writer.submit(valid) if valid else []
        accepted = sum(flags)
        result = IngestResult(
            accepted=accepted,
            duplicates=len(flags) - accepted,
            rejected=len({e.index for e in errors}),
            errors=errors,
        )
        if self._observer is not None:
            self._observer(result)
        return result
