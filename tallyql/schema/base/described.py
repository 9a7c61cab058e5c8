"""Descriptions shared by many schema types: the values of enums declared below the schema
layer (engine enums carry no GraphQL text) and the event attributes shown by several types."""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any

import strawberry

from tallyql.ingest.fields import EVENT_FIELDS


def describe_values(enum: type[Enum], descriptions: Mapping[str, str]) -> None:
    """Attach a description to every value of a strawberry enum; a missing or unknown name is a
    programming error, caught at import."""
    # unchecked below: strawberry sets __strawberry_definition__ at run time
    definition = enum.__strawberry_definition__  # type: ignore[attr-defined]
    names = {value.name for value in definition.values}
    assert names == set(descriptions), f"{definition.name}: {names ^ set(descriptions)}"
    for value in definition.values:
        value.description = descriptions[value.name]


_EVENT_DOCS = {spec.name: spec.doc for spec in EVENT_FIELDS}


def event_field(name: str, **options: Any) -> Any:
    """A field that shows one attribute of an event, described as the event contract
    (`ingest/fields.py`) describes it, so that EventInput, Request and the live items agree."""
    return strawberry.field(description=_EVENT_DOCS[name], **options)
