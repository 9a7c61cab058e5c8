"""GraphQL queries read from a PostgreSQL hot standby (TALLYQL_DATABASE_READ_URLS).

A query operation installs a read route for its execution (storage/standbys.py): its fields'
reads go to a standby that has replayed every commit made before the request, or to the
primary. Mutations and subscriptions read where they write, on the primary (a mutation reads
back what it has just written). With X-Tallyql-Explain the answer says in
`extensions.database` which database answered and why.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from graphql import OperationDefinitionNode, OperationType
from strawberry.extensions import SchemaExtension


class StandbyReads(SchemaExtension):
    def on_execute(self) -> Iterator[None]:
        ec = self.execution_context
        context = ec.context
        services = getattr(context, "services", None)
        if services is None or services.db.standbys is None:
            yield
            return
        if self._kind() is not OperationType.QUERY:
            yield
            return
        with services.db.standby_reads() as route:
            context.read_route = route
            yield

    def get_results(self) -> dict[str, Any]:
        context = self.execution_context.context
        if not getattr(context, "explain", False):
            return {}
        services = getattr(context, "services", None)
        if services is None or services.db.standbys is None:
            return {}
        route = getattr(context, "read_route", None)
        answered = route.answered if route is not None else None
        if answered is None:
            reason = "no read" if route is not None else "mutations and subscriptions"
            return {"database": {"answeredBy": "primary", "reason": reason}}
        return {"database": answered.explain()}

    def _kind(self) -> OperationType | None:
        document = self.execution_context.graphql_document
        if document is None:
            return None
        name = self.execution_context.operation_name
        operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        if name is None:
            return operations[0].operation if len(operations) == 1 else None
        found = next((o for o in operations if o.name and o.name.value == name), None)
        return found.operation if found is not None else None
