"""The common GraphQL request, POST /graphql with a JSON body, answered directly.

Profiled on `{ me { workspace role } }` (bench/overhead.py), a third of a request's server
time went to the machinery around the operation rather than to it: FastAPI solving the
route's dependencies (context, root value, response), strawberry's HTTP view (its request
adapter, content negotiation, the body parsed with the standard json module, the answer
encoded with it). This route sits before strawberry's POST route on the same path and does
the same steps in a straight line: the API key (401 without a valid one), the spent-key
refusal and the body limit (tallyql/http/graphql_limits.py), the body parsed with orjson,
the context built by the same function as strawberry's route, `schema.execute` with every
schema extension (parse and validation caches, token, depth and alias limits, permission
before coercion, cost, introspection policy, masked errors), the answer encoded with orjson
and given the same status codes (429 from the cost meter, 503 when the database failed).

Anything else goes on to strawberry's route untouched, the body replayed: SSE and
incremental delivery (by `Accept`), other content types, batches, a body that is not a
JSON object or whose query, variables or extensions have the wrong types (strawberry's
view answers those with its own 400s).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, cast

import orjson
from graphql import (
    FragmentDefinitionNode,
    GraphQLError,
    OperationDefinitionNode,
    OperationType,
)
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import Message, Receive, Scope, Send
from strawberry.http import process_result

from tallyql.engine.query.cost_meter import CostLimitExceeded, CostMeter, RateLimited
from tallyql.http.auth import services_of
from tallyql.http.graphql_http import execute_plain
from tallyql.http.graphql_limits import refuse_large_body, refuse_spent_key
from tallyql.http.outage import RETRY_HEADERS, has_unavailable_error
from tallyql.http.shared_answers import SingleFlight, shared_key
from tallyql.observability import Metrics
from tallyql.schema.base.limits import root_fields

ContextGetter = Callable[[HTTPConnection], Awaitable[Any]]
_STREAMING_ACCEPT = ("text/event-stream", "multipart/mixed")
_OWN_HEADERS = frozenset({b"content-length", b"content-type"})


def takes_fast_path(request: Request) -> bool:
    """A POST with a JSON body asking for a single JSON answer (no streaming transport)."""
    accept = request.headers.get("accept", "")
    if any(kind in accept for kind in _STREAMING_ACCEPT):
        return False
    content_type = request.headers.get("content-type", "")
    return content_type.partition(";")[0].strip().lower() == "application/json"


def operation_of(body: bytes) -> dict[str, Any] | None:
    """The request's fields when the body is one well-formed operation, else None."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    query = data.get("query")
    variables = data.get("variables")
    extensions = data.get("extensions")
    name = data.get("operationName")
    if not isinstance(query, str) or not isinstance(variables, dict | None):
        return None
    if not isinstance(extensions, dict | None) or not isinstance(name, str | None):
        return None
    return data


def encode(data: Any) -> bytes:
    """orjson, or the standard module for what orjson refuses (integers beyond 64 bits)."""
    try:
        return orjson.dumps(data)
    except TypeError:
        return json.dumps(data, separators=(",", ":")).encode()


class FastGraphQLPost:
    """The ASGI app of the direct route; `fallback` is strawberry's POST /graphql route."""

    def __init__(
        self,
        schema: Any,
        context_getter: ContextGetter,
        fallback: BaseRoute,
        share: bool = True,
        request_limit: int = 20_000,
        metrics: Metrics | None = None,
    ):
        self.schema = schema
        self.context_getter = context_getter
        self.fallback = fallback
        self.share = share
        """Identical queries share a computation (http/shared_answers.py)."""
        self.request_limit = request_limit
        self.metrics = metrics
        self.flights: SingleFlight[tuple[int, dict[str, Any], list[tuple[bytes, bytes]]]] = (
            SingleFlight()
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # the route /metrics counts requests by (FastAPI does not set it for a plain route)
        scope["route"] = self.fallback
        request = Request(scope, receive)
        if not takes_fast_path(request):
            await self._hand_on(scope, receive, send)
            return
        settings = services_of(request).settings
        context = await self.context_getter(request)  # 401 without a valid key
        principal = context.principal
        refused = refuse_spent_key(
            getattr(self.schema, "key_buckets", None),
            principal.key_id if principal is not None else None,
            settings.cost_request_limit,
        )
        if refused is None:
            refused = await refuse_large_body(request, settings.graphql_max_body_bytes)
        if refused is not None:
            await refused(scope, receive, send)
            return
        body = await request.body()  # kept by refuse_large_body
        data = operation_of(body)
        if data is None:
            await self._hand_on(scope, _replay(body), send)
            return
        key = self._shared_key(context, data)
        if key is None:
            status, answer, headers = await self._execute(context, request, data)
        else:
            (status, answer, headers), shared = await self.flights.do(
                key, lambda: self._execute(context, request, data)
            )
            if shared:
                if self.metrics is not None:
                    self.metrics.graphql_shared_answers.inc()
                if _refused_for_its_key(answer):  # the leader's budget, not this key's
                    status, answer, headers = await self._execute(context, request, data)
                else:
                    status, answer, headers = self._charge_shared(principal, answer)
        response = Response(encode(answer), status_code=status)
        response.headers["content-type"] = "application/json"
        response.headers.raw.extend(headers)
        await response(scope, receive, send)

    async def _execute(
        self, context: Any, request: Request, data: dict[str, Any]
    ) -> tuple[int, dict[str, Any], list[tuple[bytes, bytes]]]:
        """Run the operation: (status, answer, extra headers)."""
        sub_response = Response()
        context.request = request
        context.response = sub_response
        result = await execute_plain(
            self.schema,
            "POST",
            True,
            data["query"],
            data.get("variables"),
            data.get("operationName"),
            data.get("extensions"),
            context,
        )
        # a TypedDict is no dict[str, Any] to the checker, though it is one
        answer = cast(dict[str, Any], process_result(result))
        status = sub_response.status_code or 200
        headers = [(k, v) for k, v in sub_response.headers.raw if k not in _OWN_HEADERS]
        if has_unavailable_error(answer):  # the database failed during execution
            status = 503
            headers.extend((k.lower().encode(), v.encode()) for k, v in RETRY_HEADERS.items())
        return status, answer, headers

    def _shared_key(self, context: Any, data: dict[str, Any]) -> Hashable | None:
        """The question's identity when identical ones may share a computation."""
        principal = context.principal
        documents = getattr(self.schema, "documents", None)
        if not self.share or principal is None or documents is None:
            return None
        key = shared_key(
            principal.workspace_id, principal.role.value, data, context.explain, context.force_raw
        )
        if key is None or not _is_shareable_query(documents, data):
            return None
        return key

    def _charge_shared(
        self, principal: Any, answer: dict[str, Any]
    ) -> tuple[int, dict[str, Any], list[tuple[bytes, bytes]]]:
        """A shared answer costs this request's key what it cost the leader's."""
        meter = CostMeter(
            self.request_limit, getattr(self.schema, "key_buckets", None), principal.key_id
        )
        spent = ((answer.get("extensions") or {}).get("cost") or {}).get("spent", 0)
        try:
            meter.charge(int(spent), "this shared answer")
        except (RateLimited, CostLimitExceeded) as refusal:
            body = {
                "data": None,
                "errors": [{"message": str(refusal), "extensions": {"code": refusal.code}}],
                "extensions": {"cost": meter.summary()},
            }
            if isinstance(refusal, RateLimited):
                retry = str(refusal.retry_after).encode()
                return 429, body, [(b"retry-after", retry)]
            return 200, body, []
        own = {
            **answer,
            "extensions": {**(answer.get("extensions") or {}), "cost": meter.summary()},
        }
        status = 503 if has_unavailable_error(own) else 200
        headers = (
            [(k.lower().encode(), v.encode()) for k, v in RETRY_HEADERS.items()]
            if status == 503
            else []
        )
        return status, own, headers

    async def _hand_on(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.fallback.handle(scope, receive, send)


NOT_SHARED_ROOT_FIELDS = frozenset({"me"})
"""Root fields whose answer depends on the key itself, not only its workspace and role."""
_LEADER_BUDGET_CODES = frozenset({"RATE_LIMITED", "COST_LIMIT"})


def _is_shareable_query(documents: Any, data: dict[str, Any]) -> bool:
    """A query (not a mutation) none of whose root fields depends on the key itself."""
    try:
        document = documents.parse(data["query"])
    except GraphQLError:
        return False  # answered with its own syntax error
    name = data.get("operationName")
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if name is None:
        operation = operations[0] if len(operations) == 1 else None
    else:
        operation = next((o for o in operations if o.name and o.name.value == name), None)
    if operation is None or operation.operation is not OperationType.QUERY:
        return False
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    return all(
        node.name.value not in NOT_SHARED_ROOT_FIELDS
        for node in root_fields(operation.selection_set, fragments)
    )


def _refused_for_its_key(answer: dict[str, Any]) -> bool:
    return any(
        (error.get("extensions") or {}).get("code") in _LEADER_BUDGET_CODES
        for error in answer.get("errors") or ()
    )


def _replay(body: bytes) -> Receive:
    """A receive channel that gives `body` again (it was read already), then waits as the
    server's would for the disconnect."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive
