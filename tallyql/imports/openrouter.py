"""Provider activity bought through OpenRouter, imported as events (POST /v1/import/openrouter).

OpenRouter's activity API (`GET /api/v1/activity`) reports, per UTC date, model and provider
endpoint, the requests, prompt, completion and reasoning tokens and the USD spent. Each row
becomes that many `llm_call` events of its date (spread evenly over the day), so that every
figure of tallyql (requests, tokens, cost, by model, by day) counts them like gateway traffic:
tokens and cost are split across the row's events in whole units (nano-USD), so their sums
equal the row exactly. Imported events carry `gateway` "openrouter", the tag
"openrouter-import", `metadata.source` "openrouter_import" (with the endpoint and permaslug)
and the cost OpenRouter charged (`cost_source` provided).

Idempotent: an event's id is `openrouter:<date>:<endpoint>:<n>`, so importing a row again
stores nothing new.

No double counting: traffic a gateway already sent as events for the same date and model
through OpenRouter (events with gateway "openrouter" that were not imported, the model named
by its slug "openai/gpt-4.1" or by "gpt-4.1") is subtracted first; only the remainder is
imported (requests, tokens and cost alike, never below zero). Import completed days (the
activity API reports those only): gateway events that arrive for a day after it was imported
are not subtracted again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select

from tallyql.ingest.service import IngestService
from tallyql.ingest.validate import FieldError
from tallyql.money import round_to_nano, to_usd
from tallyql.storage.database import Database
from tallyql.storage.tables import events

SOURCE = "openrouter_import"
GATEWAY = "openrouter"
ID_PREFIX = "openrouter:"
MAX_ROWS = 10_000
MAX_EVENTS = 200_000
"""Events one import call may create (rows beyond are refused, each with its error)."""
MAX_TEXT = 256

FIELDS = {  # the API's snake_case names, and the SDKs' camelCase ones
    "date": ("date",),
    "model": ("model",),
    "model_permaslug": ("model_permaslug", "modelPermaslug"),
    "endpoint_id": ("endpoint_id", "endpointId"),
    "provider_name": ("provider_name", "providerName"),
    "usage": ("usage",),
    "byok_usage_inference": ("byok_usage_inference", "byokUsageInference"),
    "requests": ("requests",),
    "prompt_tokens": ("prompt_tokens", "promptTokens"),
    "completion_tokens": ("completion_tokens", "completionTokens"),
    "reasoning_tokens": ("reasoning_tokens", "reasoningTokens"),
}
COUNTS = ("requests", "prompt_tokens", "completion_tokens", "reasoning_tokens")


@dataclass(frozen=True)
class ActivityRow:
    day: date
    model: str
    permaslug: str | None
    endpoint_id: str
    provider_name: str | None
    usage_nanousd: int
    byok_nanousd: int
    requests: int
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int

    @property
    def provider(self) -> str | None:
        """The model's maker, from its slug ("openai/gpt-4.1" -> openai)."""
        head, slash, _ = self.model.partition("/")
        return head.lower() if slash else None

    @property
    def model_name(self) -> str:
        return self.model.partition("/")[2] or self.model


def _get(item: dict[str, Any], name: str) -> Any:
    for key in FIELDS[name]:
        if key in item:
            return item[key]
    return None


def parse(body: Any) -> tuple[list[tuple[int, ActivityRow]], list[FieldError]]:
    """(index, row) of the valid items of `{"data": [...]}` (or a bare list), and one error
    per invalid item (index, field, message)."""
    items = body.get("data") if isinstance(body, dict) else body
    if not isinstance(items, list):
        return [], [FieldError(-1, "data", 'expected {"data": [activity items]}')]
    if len(items) > MAX_ROWS:
        return [], [FieldError(-1, "data", f"at most {MAX_ROWS} items per call")]
    rows: list[tuple[int, ActivityRow]] = []
    errors: list[FieldError] = []
    for index, item in enumerate(items):
        found = _row(index, item)
        if isinstance(found, FieldError):
            errors.append(found)
        else:
            rows.append((index, found))
    return rows, errors


def _row(index: int, item: Any) -> ActivityRow | FieldError:
    if not isinstance(item, dict):
        return FieldError(index, "", "an activity item is an object")
    try:
        day = date.fromisoformat(str(_get(item, "date")))
    except ValueError:
        return FieldError(index, "date", "expected YYYY-MM-DD")
    texts: dict[str, str | None] = {}
    for name in ("model", "endpoint_id", "model_permaslug", "provider_name"):
        value = _get(item, name)
        required = name in ("model", "endpoint_id")
        if value is None and not required:
            texts[name] = None
            continue
        if not isinstance(value, str) or not value or len(value) > MAX_TEXT or "\x00" in value:
            return FieldError(index, name, f"expected a string of 1 to {MAX_TEXT} characters")
        texts[name] = value
    numbers: dict[str, int] = {}
    for name in COUNTS:
        value = _get(item, name) or 0
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10**12:
            return FieldError(index, name, "expected a whole number from 0 to 10^12")
        numbers[name] = value
    money: dict[str, int] = {}
    for name in ("usage", "byok_usage_inference"):
        value = _get(item, name) or 0
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1e7:
            return FieldError(index, name, "expected USD from 0 to 10,000,000")
        money[name] = round_to_nano(value)
    assert texts["model"] is not None and texts["endpoint_id"] is not None
    return ActivityRow(
        day=day,
        model=texts["model"],
        permaslug=texts["model_permaslug"],
        endpoint_id=texts["endpoint_id"],
        provider_name=texts["provider_name"],
        usage_nanousd=money["usage"],
        byok_nanousd=money["byok_usage_inference"],
        requests=numbers["requests"],
        prompt_tokens=numbers["prompt_tokens"],
        completion_tokens=numbers["completion_tokens"],
        reasoning_tokens=numbers["reasoning_tokens"],
    )


@dataclass(frozen=True)
class Seen:
    """Gateway traffic through OpenRouter already stored for a (date, model)."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cost_nanousd: int = 0


async def gateway_traffic(db: Database, workspace_id: int, row: ActivityRow) -> Seen:
    start = datetime(row.day.year, row.day.month, row.day.day, tzinfo=UTC)
    e = events.c
    query = select(
        func.count(),
        func.coalesce(func.sum(e.input_tokens), 0),
        func.coalesce(func.sum(e.output_tokens), 0),
        func.coalesce(func.sum(e.reasoning_tokens), 0),
        func.coalesce(func.sum(e.cost_nanousd), 0),
    ).where(
        e.workspace_id == workspace_id,
        e.ts >= start,
        e.ts < start + timedelta(days=1),
        func.lower(e.gateway) == GATEWAY,
        or_(e.model == row.model, e.model == row.model_name),
        ~e.id.startswith(ID_PREFIX, autoescape=True),
    )
    async with db.read() as conn:
        found = (await conn.execute(query)).one()
    return Seen(*(int(v) for v in found))


def _split(total: int, parts: int) -> list[int]:
    """`total` in `parts` whole shares that differ by at most one and sum to it."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def expand(row: ActivityRow, seen: Seen) -> list[dict[str, Any]]:
    """The events that stand for what the row holds beyond what gateways already sent."""
    count = row.requests - seen.requests
    if count <= 0:
        return []
    prompt = _split(max(0, row.prompt_tokens - seen.prompt_tokens), count)
    completion = _split(max(0, row.completion_tokens - seen.completion_tokens), count)
    reasoning = _split(max(0, row.reasoning_tokens - seen.reasoning_tokens), count)
    cost = _split(max(0, row.usage_nanousd - seen.cost_nanousd), count)
    start = datetime(row.day.year, row.day.month, row.day.day, tzinfo=UTC)
    step = timedelta(days=1) / count
    metadata = {
        "source": SOURCE,
        "endpoint_id": row.endpoint_id,
        "model_permaslug": row.permaslug,
        "provider_name": row.provider_name,
    }
    out = []
    for i in range(count):
        event: dict[str, Any] = {
            "id": f"{ID_PREFIX}{row.day.isoformat()}:{row.endpoint_id}:{i}",
            "timestamp": (start + step * i + step / 2).isoformat(),
            "kind": "llm_call",
            "status": "success",
            "model": row.model_name,
            "gateway": GATEWAY,
            "input_tokens": prompt[i],
            "output_tokens": completion[i],
            "reasoning_tokens": reasoning[i],
            "cost_usd": to_usd(cost[i]),
            "is_byok": row.byok_nanousd > 0,
            "tags": ["openrouter-import"],
            "metadata": {k: v for k, v in metadata.items() if v is not None},
        }
        if row.provider is not None:
            event["provider"] = row.provider
        out.append(event)
    return out


class ImportRefused(ValueError):
    """The body as a whole is not activity (no `data` list, too many items)."""


async def import_activity(
    db: Database, ingest: IngestService, workspace_id: int, body: Any, batch_events: int
) -> dict[str, Any]:
    """Import the activity items of `body`; the answer of POST /v1/import/openrouter.
    Raises ImportRefused, or the writer's errors (nothing partial is lost: imports are
    idempotent, so the caller retries the whole body)."""
    rows, errors = parse(body)
    if errors and errors[0].index == -1:
        raise ImportRefused(errors[0].message)
    items = len(rows) + len(errors)  # each parse error is one item
    accepted = duplicates = skipped = planned = imported_rows = 0
    for index, row in rows:
        seen = await gateway_traffic(db, workspace_id, row)
        made = expand(row, seen)
        skipped += min(seen.requests, row.requests)
        if planned + len(made) > MAX_EVENTS:
            message = f"more than {MAX_EVENTS} events in one call; import fewer days at once"
            errors.append(FieldError(index, "requests", message))
            continue
        planned += len(made)
        for start in range(0, len(made), batch_events):
            result = await ingest.ingest(workspace_id, made[start : start + batch_events])
            accepted += result.accepted
            duplicates += result.duplicates
            errors += [FieldError(index, e.field, e.message) for e in result.errors]
        imported_rows += 1
    errors.sort(key=lambda e: e.index)
    return {
        "rows": items,
        "importedRows": imported_rows,
        "accepted": accepted,
        "duplicates": duplicates,
        "skippedGatewayRequests": skipped,
        "rejected": len({e.index for e in errors}),
        "errors": [e.as_dict() for e in errors],
    }
