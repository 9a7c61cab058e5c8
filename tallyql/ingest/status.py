"""An event's status and error type, derived from its HTTP status code when the caller sends
none.

A gateway that reports only HTTP codes would otherwise read as 100 % successful. The rule, used
by both ingest paths (`fastpath.py`, `validate.py`) and so by REST, GraphQL and OTLP alike:
- a `status` the caller sends wins; without one, an `error_type` means error, else a code of
  400-599 means error and any other code (or none) success;
- an error without an `error_type` takes the one its code names where that is unambiguous
  (`ERROR_TYPE_OF_CODE`, any other 5xx is "other"), a blocked one "policy_blocked", else
  "other".
"""

from __future__ import annotations

ERROR_TYPE_OF_CODE: dict[int, str] = {
    429: "rate_limit",
    401: "auth_error",
    403: "auth_error",
    408: "timeout",
    504: "timeout",
    400: "invalid_request",
    404: "invalid_request",
    409: "invalid_request",
    413: "invalid_request",
    422: "invalid_request",
}


def is_error_code(status_code: int | None) -> bool:
    """4xx and 5xx are errors."""
    return status_code is not None and 400 <= status_code <= 599


def error_type_of_code(status_code: int | None) -> str | None:
    """The error type an HTTP code names unambiguously (other 5xx: "other"), else None."""
    if status_code is None:
        return None
    known = ERROR_TYPE_OF_CODE.get(status_code)
    if known is not None:
        return known
    return "other" if 500 <= status_code <= 599 else None


def derive_status(
    status: str | None, status_code: int | None, error_type: str | None
) -> tuple[str, str | None] | None:
    """(status, error_type) of an event; None when it names an error type on a success."""
    if status is None:
        status = "error" if error_type or is_error_code(status_code) else "success"
    if status == "success":
        return None if error_type is not None else (status, None)
    if error_type is None:
        if status == "blocked":
            error_type = "policy_blocked"
        else:
            error_type = error_type_of_code(status_code) or "other"
    return status, error_type
