"""Relay connections of any node type: `XConnection { totalCount edges { cursor node } nodes
pageInfo }`, built from an engine page."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

import strawberry

from tallyql.engine.ranking import RankedPage
from tallyql.schema.base.common import PageInfo

T = TypeVar("T")


class RowPage(Protocol):
    """A keyset page of stored rows (storage's `Page`), as a feature store returns it."""

    @property
    def rows(self) -> list[dict[str, Any]]: ...
    @property
    def cursors(self) -> list[str]: ...
    @property
    def total_count(self) -> int: ...
    @property
    def has_next_page(self) -> bool: ...


@strawberry.type(description="An item of a page with its cursor.")
class Edge(Generic[T]):
    cursor: str = strawberry.field(description="Opaque; pass as `after` to page on from here.")
    node: T = strawberry.field(description="The item.")


@strawberry.type(description="A page of a list, with opaque cursors (first/after).")
class Connection(Generic[T]):
    total_count: int = strawberry.field(description="Items in the whole list (count).")
    edges: list[Edge[T]] = strawberry.field(description="This page's items with cursors.")
    page_info: PageInfo = strawberry.field(description="Whether more pages follow, and cursors.")

    @strawberry.field(description="This page's items, without cursors.")
    def nodes(self) -> list[T]:
        return [e.node for e in self.edges]


def connection(
    nodes: Sequence[T],
    cursors: Sequence[str],
    total_count: int,
    has_next_page: bool,
    after: str | None,
) -> Connection[T]:
    edges = [Edge(cursor=c, node=n) for n, c in zip(nodes, cursors, strict=True)]
    return Connection(
        total_count=total_count,
        edges=edges,
        page_info=PageInfo.of(cursors, has_next_page, after),
    )


def ranked_connection(
    page: RankedPage, after: str | None, make: Callable[[tuple[Any, ...], dict[Any, Any]], T]
) -> Connection[T]:
    nodes = [make(keys, values) for keys, values in page.rows]
    return connection(nodes, page.cursors, page.total_count, page.has_next_page, after)


def row_connection(
    page: RowPage, after: str | None, make: Callable[[dict[str, Any]], T]
) -> Connection[T]:
    nodes = [make(row) for row in page.rows]
    return connection(nodes, page.cursors, page.total_count, page.has_next_page, after)
