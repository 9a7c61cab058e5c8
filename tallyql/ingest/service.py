"""The one ingest pipeline behind every door (REST, GraphQL, OTLP, demo loader).

validate -> normalise -> price -> writer (group commit) -> answer with what was accepted,
what was a duplicate of an event already stored, and what was rejected and why.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from tallyql.clock import clock
from tallyql.ingest import fastpath
from tallyql.ingest.body import NDJSON_TYPES, check_event_count, parse_events
from tallyql.ingest.fields import MAX_COST_USD
from tallyql.ingest.pricing import Pricer
from tallyql.ingest.validate import FieldError, IngestResult, validate_event
from tallyql.money import NANO_PER_USD, to_usd
from tallyql.storage.ingest.record import COST, HAS_PAYLOAD, RECEIVED_AT, WORKSPACE, ValidEvent
from tallyql.storage.ingest.writer import Writer

MAX_COST_NANO = int(MAX_COST_USD) * NANO_PER_USD


class CostTooHigh(ValueError):
    """An event's computed cost is beyond what one event may cost."""


class IngestService:
    def __init__(
        self,
        writer: Writer,
        pricer: Pricer,
        observer: Callable[[IngestResult], None] | None = None,
        max_event_age: timedelta | None = None,
    ) -> None:
        """`max_event_age`: how far back an event's timestamp may be (None: no bound, for the
        bulk loader of synthetic history and for tests)."""
        self.writer = writer
        self.pricer = pricer
        self._observer = observer
        self.max_event_age = max_event_age

    def oldest(self, now: datetime) -> datetime | None:
        """The oldest event time accepted at `now`."""
        return None if self.max_event_age is None else now - self.max_event_age

    def prepare(
        self, workspace_id: int, raw_events: Sequence[Any], now: datetime | None = None
    ) -> tuple[list[ValidEvent], list[FieldError]]:
        """Validate, normalise and price; the valid events and the errors of the others."""
        now = now or clock.now()
        oldest = self.oldest(now)
        checked = (validate_event(raw, i, now, oldest) for i, raw in enumerate(raw_events))
        return self._finish_all(checked, workspace_id, now)

    def prepare_fast(
        self,
        workspace_id: int,
        structs: Sequence[Any],
        now: datetime | None = None,
        history: bool = False,
    ) -> list[ValidEvent]:
        """`prepare` for structs that msgspec already checked; SlowPath when one needs the
        detailed validator. `history`: any past time is accepted (the bulk loader, which
        makes its partitions first)."""
        now = now or clock.now()
        oldest = None if history else self.oldest(now)
        try:
            return [
                self._finish(fastpath.to_valid(s, i, now, oldest), workspace_id, now)
                for i, s in enumerate(structs)
            ]
        except CostTooHigh:
            raise fastpath.SlowPath from None

    def prepare_rows(
        self, workspace_id: int, rows: Sequence[list[Any]], now: datetime | None = None
    ) -> tuple[list[ValidEvent], list[FieldError]]:
        """`prepare` for rows of field values (`fastpath.EventRow`, as the OTLP door makes
        them): the whole batch through msgspec at once; when that fails, each row on its own,
        and only the rows that still fail through the detailed validator, which names every
        error (so one bad span does not send its whole batch down the slow path)."""
        now = now or clock.now()
        oldest = self.oldest(now)
        try:
            return self.prepare_fast(workspace_id, fastpath.convert_rows(rows), now), []
        except fastpath.SlowPath:
            pass
        checked = (_check_row(row, i, now, oldest) for i, row in enumerate(rows))
        return self._finish_all(checked, workspace_id, now)

    def _finish_all(
        self,
        checked: Iterable[ValidEvent | list[FieldError]],
        workspace_id: int,
        now: datetime,
    ) -> tuple[list[ValidEvent], list[FieldError]]:
        """The checked events finished (`_finish`), in order, and every error: the checks'
        own and a computed cost beyond what one event may cost."""
        valid: list[ValidEvent] = []
        errors: list[FieldError] = []
        for item in checked:
            if isinstance(item, list):
                errors.extend(item)
                continue
            try:
                valid.append(self._finish(item, workspace_id, now))
            except CostTooHigh as exc:
                errors.append(FieldError(item.index, "cost_usd", str(exc)))
        return valid, errors

    def _finish(self, checked: ValidEvent, workspace_id: int, now: datetime) -> ValidEvent:
        record = checked.record
        record[WORKSPACE] = workspace_id
        record[RECEIVED_AT] = now
        record[HAS_PAYLOAD] = checked.has_payload
        self.pricer.apply(workspace_id, record, checked.cost_usd)
        if record[COST] > MAX_COST_NANO:
            # only a computed cost can get here (cost_usd is bounded by the contract): huge
            # token counts at a high price; refused so that cost sums stay far from overflow
            raise CostTooHigh(
                f"the cost computed from the tokens, {to_usd(record[COST]):,.2f} USD, "
                f"exceeds the {MAX_COST_USD:,.0f} USD one event may cost; check the token "
                "counts and the model's price"
            )
        return checked

    async def ingest_body(
        self, workspace_id: int, body: bytes, content_type: str | None, max_events: int
    ) -> IngestResult:
        """Ingest a request body: the msgspec fast path when the whole batch is valid, else
        the detailed path with per-event errors. BodyError when the body is unreadable."""
        media = (content_type or "").split(";")[0].strip().lower()
        # before any parser builds objects: a small body may hold millions of empty events
        check_event_count(body, media in NDJSON_TYPES, max_events)
        try:
            structs = fastpath.decode_body(body, media in NDJSON_TYPES)
            if len(structs) > max_events:
                raise fastpath.SlowPath
            valid = self.prepare_fast(workspace_id, structs)
        except fastpath.SlowPath:
            parsed = parse_events(body, content_type, max_events)
            return await self.ingest(workspace_id, parsed.events, parsed.errors)
        return await self._store(valid, [])

    async def ingest_rows(self, workspace_id: int, rows: Sequence[list[Any]]) -> IngestResult:
        """Store rows of field values (see `prepare_rows`); returns after commit."""
        valid, errors = self.prepare_rows(workspace_id, rows)
        return await self._store(valid, errors)

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


def _check_row(
    row: list[Any], index: int, now: datetime, oldest: datetime | None
) -> ValidEvent | list[FieldError]:
    """One row through msgspec, else through the detailed validator, which names what is
    wrong."""
    try:
        return fastpath.to_valid(fastpath.convert_row(row), index, now, oldest)
    except fastpath.SlowPath:
        return validate_event(fastpath.row_event(row), index, now, oldest)
