"""Parsing and validation, cached by document text: one schema extension.

A dashboard sends the same few documents over and over; each is parsed (with the token
limit, TALLYQL_GRAPHQL_MAX_TOKENS) and validated (graphql-core's rules plus the depth and
alias limits, TALLYQL_GRAPHQL_MAX_DEPTH / _MAX_ALIASES) once, then served from a bounded LRU
cache keyed by the document's text (TALLYQL_GRAPHQL_CACHE_SIZE entries each). A document
that fails to parse is not cached (it raises, as before); a document that fails validation
is cached with its errors, which are the same every time.

This replaces strawberry's MaxTokensLimiter, ParserCache, ValidationCache and
AddValidationRules, which did the same in four extensions: strawberry wraps every hook of
every extension anew for each request, and that wrapping was the largest part of a trivial
query's GraphQL cost (bench/overhead.py). Listed before the introspection policy, whose
errors it adds to the cached ones (never into the cache).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from functools import lru_cache
from typing import Any

from graphql import ASTValidationRule, DocumentNode, GraphQLError, parse
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document


class Documents:
    """The caches of one schema: document text -> document, document -> validation errors."""

    def __init__(
        self, max_tokens: int, rules: Sequence[type[ASTValidationRule]], size: int
    ) -> None:
        self.rules = tuple(rules)

        def parse_text(text: str) -> DocumentNode:
            return parse(text, max_tokens=max_tokens)

        self.parse: Callable[[str], DocumentNode] = lru_cache(maxsize=size)(parse_text)
        self._validate = lru_cache(maxsize=size)(self._validate_uncached)

    def _validate_uncached(
        self, schema: Any, document: DocumentNode, rules: tuple[type[ASTValidationRule], ...]
    ) -> tuple[GraphQLError, ...]:
        return tuple(validate_document(schema, document, rules + self.rules))

    def validate(
        self, schema: Any, document: DocumentNode, rules: tuple[type[ASTValidationRule], ...]
    ) -> list[GraphQLError]:
        # a new list every time: later extensions add their own errors to it
        return list(self._validate(schema, document, rules))


class CachedDocuments(SchemaExtension):
    """Parse and validate through the schema's `Documents`."""

    def __init__(self, documents: Documents) -> None:
        self.documents = documents

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        if context.graphql_document is None and context.query:
            context.graphql_document = self.documents.parse(context.query)
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        if context.graphql_document is not None and context.pre_execution_errors is None:
            context.pre_execution_errors = self.documents.validate(
                context.schema._schema, context.graphql_document, context.validation_rules
            )
        yield
