"""Who is calling: the workspace and role behind an API key, and what each role may do."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    MEMBER = "member"
    VIEWER = "viewer"
    INGEST = "ingest"


class Permission(StrEnum):
    READ = "read"  # analytics, request log, sessions, audit trail
    INGEST = "ingest"  # events, traces, audit events
    MANAGE = "manage"  # users, groups, alert rules
    ADMIN = "admin"  # keys, budgets, prices, retention, other workspaces


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission),
    Role.MEMBER: frozenset({Permission.READ, Permission.INGEST, Permission.MANAGE}),
    Role.VIEWER: frozenset({Permission.READ}),
    Role.INGEST: frozenset({Permission.INGEST}),
}


@dataclass(frozen=True, slots=True)
class Principal:
    workspace_id: int
    workspace_name: str
    role: Role
    key_id: str
    key_name: str

    def can(self, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS[self.role]


class AuthError(Exception):
    """No key, or a key that is unknown or revoked (HTTP 401, code UNAUTHENTICATED)."""

    code = "UNAUTHENTICATED"


class PermissionDenied(Exception):
    """A valid key whose role may not do this (HTTP 403, code FORBIDDEN)."""

    code = "FORBIDDEN"


def require(principal: Principal, permission: Permission) -> None:
    if not principal.can(permission):
        raise PermissionDenied(
            f"a {principal.role.value} key may not do this (needs {permission.value} permission)"
        )
