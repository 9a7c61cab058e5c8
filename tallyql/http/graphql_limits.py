"""The size limit of GraphQL requests over HTTP, checked before anything parses them, and
the refusal of a key whose budget of cost points is spent, before its body is even read.

A POST body larger than TALLYQL_GRAPHQL_MAX_BODY_BYTES (query, variables and all) is refused
with 413 and a GraphQL error body (code PAYLOAD_TOO_LARGE): from its Content-Length when
declared, else while it streams in, so that the refused part is never read, let alone
decoded as JSON or coerced. The document's own size limit (TALLYQL_GRAPHQL_MAX_QUERY_BYTES)
is checked by schema/base/limits.py, for every transport.
"""

from __future__ import annotations

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from tallyql.engine.cost import FIELD_POINTS
from tallyql.engine.cost_meter import CostMeter, KeyBuckets
from tallyql.http.responses import JSONBody

CODE = "PAYLOAD_TOO_LARGE"


def too_large(limit: int) -> Response:
    message = (
        f"the request body exceeds the limit of {limit} bytes (TALLYQL_GRAPHQL_MAX_BODY_BYTES)"
    )
    return JSONBody(
        {"data": None, "errors": [{"message": message, "extensions": {"code": CODE}}]}, 413
    )


async def refuse_large_body(request: Request, limit: int) -> Response | None:
    """A 413 answer when the body is over `limit` bytes; else None, the body read and kept
    on the request for the GraphQL view to parse."""
    if request.method != "POST":
        return None
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        return too_large(limit)
    # the ASGI messages read directly: Starlette's request.stream() costs more per request
    # than the rest of this check (an async generator and its bookkeeping)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    request._body = b"".join(chunks)  # Starlette's cache of the body: request.body() reads it
    return None


def refuse_spent_key(buckets: KeyBuckets | None, key: str | None, limit: int) -> Response | None:
    """429 at once when the key cannot pay even a field's point: a key over its budget that
    keeps asking costs the server next to nothing (no body read, no parsing)."""
    if buckets is None or key is None:
        return None
    level = buckets.level(key)
    if level >= FIELD_POINTS:
        return None
    wait = max(1, -(-(FIELD_POINTS - level) // buckets.rate))
    message = (
        f"this key has spent its {buckets.per_minute} cost points of the last minute; "
        f"retry in {int(wait)} s"
    )
    body = {
        "data": None,
        "errors": [{"message": message, "extensions": {"code": "RATE_LIMITED"}}],
        "extensions": {"cost": CostMeter(limit, buckets, key).summary()},
    }
    return JSONBody(body, 429, headers={"Retry-After": str(int(wait))})
