"""The operator: admin keys of one workspace (TALLYQL_OPERATOR_WORKSPACE, default "default")
may ask analytics questions about any other workspace, or all of them at once."""

from __future__ import annotations

from tallyql.auth.principal import Permission, PermissionDenied, Principal
from tallyql.config import Settings
from tallyql.engine.analytics import QueryError
from tallyql.engine.query.scope import Scope

ALL_WORKSPACES = "*"


def is_operator(principal: Principal, settings: Settings) -> bool:
    return (
        principal.can(Permission.ADMIN)
        and bool(settings.operator_workspace)
        and principal.workspace_name == settings.operator_workspace
    )


def require_operator(principal: Principal, settings: Settings) -> None:
    if not is_operator(principal, settings):
        raise PermissionDenied(
            "only admin keys of the operator workspace may look across workspaces"
        )


def workspace_scope(principal: Principal, settings: Settings, workspace: str | None) -> Scope:
    """The caller's own workspace, or (operator admins only) the workspace with id
    `workspace`, or every workspace for "*"."""
    if workspace is None:
        return Scope.of(principal.workspace_id)
    require_operator(principal, settings)
    if workspace == ALL_WORKSPACES:
        return Scope(None)
    if not workspace.isdigit():
        raise QueryError('workspace must be a workspace id (see `workspaces`) or "*" for all')
    return Scope.of(int(workspace))
