"""`FieldError`: input described wrongly, with the field at fault.

The managed resources (budgets, alert rules, webhooks, reports) check what they are given
in their own packages and raise a subclass of this; the schema answers any of them with one
`UserError` (code INVALID) through one helper (schema/base/crud.py), so a new resource adds
a subclass, not another copy of the exception and its handling.
"""

from __future__ import annotations


class FieldError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        """`field`: the input field as the API names it (camelCase), e.g. "amountUsd"."""
        super().__init__(message)
        self.field = field
