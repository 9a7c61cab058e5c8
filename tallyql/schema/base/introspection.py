"""Who may introspect the schema (`__schema` / `__type`): TALLYQL_INTROSPECTION.

`all` (the default) lets every key; `admin` only admin keys; `off` nobody. A refused
operation fails validation with `extensions.code` INTROSPECTION_DISABLED and runs nothing.
`__typename` is not introspection (clients add it everywhere). The GraphiQL page still loads;
its documentation explorer needs a key that may introspect.
"""

from __future__ import annotations

from collections.abc import Iterator

from graphql import DocumentNode, FieldNode, GraphQLError, Visitor, visit
from strawberry.extensions import SchemaExtension

from tallyql.auth.principal import Role

MODES = ("all", "admin", "off")
INTROSPECTION_FIELDS = frozenset({"__schema", "__type"})
CODE = "INTROSPECTION_DISABLED"


class _Finder(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.found = False

    def enter_field(self, node: FieldNode, *_: object) -> object:
        if node.name.value in INTROSPECTION_FIELDS:
            self.found = True
            return self.BREAK
        return None


def asks_introspection(document: DocumentNode) -> bool:
    """True when any operation or fragment of the document selects __schema or __type."""
    finder = _Finder()
    visit(document, finder)
    return finder.found


class IntrospectionPolicy(SchemaExtension):
    """Refuses introspection to the keys the mode excludes (listed after the validation
    cache, whose result this adds to)."""

    mode = "all"

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if document is not None and asks_introspection(document):
            principal = getattr(context.context, "principal", None)
            admin = principal is not None and principal.role is Role.ADMIN
            if self.mode == "off" or not admin:
                message = (
                    "introspection is turned off on this server"
                    if self.mode == "off"
                    else "introspection is allowed for admin keys only"
                )
                error = GraphQLError(message, extensions={"code": CODE})
                context.pre_execution_errors = [*(context.pre_execution_errors or []), error]
        yield


def introspection_policy(mode: str) -> type[IntrospectionPolicy] | None:
    """The extension for a mode (None for `all`: nothing to check)."""
    if mode not in MODES:
        raise ValueError(f"introspection mode must be one of {', '.join(MODES)}")
    if mode == "all":
        return None
    return type(f"IntrospectionPolicy_{mode}", (IntrospectionPolicy,), {"mode": mode})
