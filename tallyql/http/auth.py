"""API key authentication for HTTP routes: `Authorization: Bearer <key>`."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request
from starlette.requests import HTTPConnection

from tallyql.auth.principal import Permission, Principal
from tallyql.http.errors import api_error
from tallyql.services import Services
from tallyql.storage.audit import Actor, audit_change


def services_of(conn: HTTPConnection) -> Services:
    return conn.app.state.services


def bearer_key(conn: HTTPConnection) -> str | None:
    header = conn.headers.get("authorization")
    if not header:
        return None
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return None
    return key.strip()


def unauthenticated(message: str = "missing or invalid API key") -> HTTPException:
    return api_error(
        401, "UNAUTHENTICATED", message, {"WWW-Authenticate": 'Bearer realm="tallyql"'}
    )


async def authenticate(conn: HTTPConnection) -> Principal:
    """The caller behind the bearer key; 401 without one or with a bad one."""
    key = bearer_key(conn)
    if key is None:
        raise unauthenticated("missing API key: send Authorization: Bearer <key>")
    principal = await services_of(conn).keys.authenticate(key)
    if principal is None:
        raise unauthenticated("invalid or revoked API key")
    return principal


def requires(permission: Permission) -> Callable[[Request], Coroutine[Any, Any, Principal]]:
    async def dependency(request: Request) -> Principal:
        principal = await authenticate(request)
        if not principal.can(permission):
            raise api_error(403, "FORBIDDEN", f"a {principal.role.value} key may not do this")
        return principal

    return dependency


def client_ip(conn: HTTPConnection) -> str | None:
    return conn.client.host if conn.client else None


async def audit_request(
    request: Request,
    principal: Principal,
    action: str,
    resource_type: str,
    resource_id: str,
    details: dict[str, Any],
) -> None:
    """Record what a key did through a REST route (an export, an import) in the audit trail,
    in a transaction of its own."""
    actor = Actor(principal.key_id, "api_key", client_ip(request))
    async with services_of(request).db.write() as conn:
        await audit_change(
            conn, principal.workspace_id, action, resource_type, resource_id, actor, details
        )
