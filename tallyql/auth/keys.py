"""API keys: `tq_<id>_<secret>`. Only a SHA-256 hash of the secret is stored.

The secret is 256 random bits, so a fast hash is enough (no password stretching needed), and
it is compared in constant time. Lookups are cached for `ttl` seconds
(TALLYQL_KEY_CACHE_SECONDS), keyed by a SHA-256 of the whole key (the cache holds no secret)
and bounded to MAX_CACHED keys: a dashboard's requests then cost no database read for the
key. Revoking a key clears this process's cache at once; another replica honours the
revocation within the TTL (the revocation delay the README states).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update

from tallyql.auth.principal import Principal, Role
from tallyql.clock import clock
from tallyql.storage.audit import AuditRecord, record_audit
from tallyql.storage.database import Database
from tallyql.storage.tables import api_keys, workspaces
from tallyql.storage.workspaces import get_or_create_workspace

KEY_PREFIX = "tq"
_ID_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_key(key: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed key, else None."""
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


@dataclass(frozen=True, slots=True)
class KeyInfo:
    id: str
    workspace_id: int
    workspace_name: str
    name: str
    role: Role
    created_at: datetime
    revoked_at: datetime | None


class KeyService:
    MAX_CACHED = 10_000
    """Lookups kept; past it the cache starts afresh (unknown keys count too, so that a
    flood of made-up keys cannot grow it)."""

    def __init__(self, db: Database, ttl_seconds: float = 10.0) -> None:
        self._db = db
        self._ttl = ttl_seconds
        self._cache: dict[bytes, tuple[float, Principal | None]] = {}

    async def create(
        self,
        workspace: str,
        role: Role,
        name: str | None = None,
        actor: str | None = None,
        actor_type: str = "system",
        source_ip: str | None = None,
    ) -> tuple[str, KeyInfo]:
        """Create a key (and the workspace if needed); returns the full key, shown once."""
        key_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))
        secret = secrets.token_urlsafe(32)
        now = clock.now()
        label = name or f"{role.value} key"
        async with self._db.write() as conn:
            workspace_id = await get_or_create_workspace(conn, workspace)
            await conn.execute(
                api_keys.insert().values(
                    id=key_id,
                    workspace_id=workspace_id,
                    name=label,
                    role=role.value,
                    secret_hash=_hash(secret),
                    created_at=now,
                )
            )
            await record_audit(
                conn,
                AuditRecord(
                    workspace_id=workspace_id,
                    actor_id=actor,
                    actor_type=actor_type,
                    action="create",
                    resource_type="api_key",
                    resource_id=key_id,
                    source_ip=source_ip,
                    details={"role": role.value, "name": label},
                ),
            )
        info = KeyInfo(key_id, workspace_id, workspace, label, role, now, None)
        return f"{KEY_PREFIX}_{key_id}_{secret}", info

    async def revoke(
        self,
        key_id: str,
        workspace_id: int | None = None,
        actor: str | None = None,
        actor_type: str = "system",
        source_ip: str | None = None,
    ) -> KeyInfo | None:
        """Revoke a key (within a workspace when given); None when there is no such key."""
        now = clock.now()
        async with self._db.write() as conn:
            query = select(api_keys.c.workspace_id).where(
                api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None)
            )
            if workspace_id is not None:
                query = query.where(api_keys.c.workspace_id == workspace_id)
            found = (await conn.execute(query)).scalar_one_or_none()
            if found is None:
                return None
            await conn.execute(
                update(api_keys).where(api_keys.c.id == key_id).values(revoked_at=now)
            )
            await record_audit(
                conn,
                AuditRecord(
                    workspace_id=found,
                    actor_id=actor,
                    actor_type=actor_type,
                    action="delete",
                    resource_type="api_key",
                    resource_id=key_id,
                    source_ip=source_ip,
                    details={"revoked": True},
                ),
            )
        self._cache.clear()
        keys = await self.list(found, include_revoked=True)
        return next(k for k in keys if k.id == key_id)

    async def list(
        self, workspace_id: int | None = None, include_revoked: bool = False
    ) -> list[KeyInfo]:
        query = select(api_keys, workspaces.c.name.label("workspace_name")).join(
            workspaces, workspaces.c.id == api_keys.c.workspace_id
        )
        if workspace_id is not None:
            query = query.where(api_keys.c.workspace_id == workspace_id)
        if not include_revoked:
            query = query.where(api_keys.c.revoked_at.is_(None))
        async with self._db.read() as conn:
            rows = (await conn.execute(query.order_by(api_keys.c.created_at))).mappings().all()
        return [
            KeyInfo(
                r["id"],
                r["workspace_id"],
                r["workspace_name"],
                r["name"],
                Role(r["role"]),
                r["created_at"],
                r["revoked_at"],
            )
            for r in rows
        ]

    async def authenticate(self, key: str) -> Principal | None:
        """The principal behind a key, or None for a malformed, unknown or revoked key."""
        now = time.monotonic()
        digest = hashlib.sha256(key.encode()).digest()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        principal = await self._lookup(key)
        if len(self._cache) >= self.MAX_CACHED:
            self._cache.clear()
        self._cache[digest] = (now + self._ttl, principal)
        return principal

    async def _lookup(self, key: str) -> Principal | None:
        parsed = parse_key(key)
        if parsed is None:
            return None
        key_id, secret = parsed
        query = (
            select(api_keys, workspaces.c.name.label("workspace_name"))
            .join(workspaces, workspaces.c.id == api_keys.c.workspace_id)
            .where(api_keys.c.id == key_id)
        )
        async with self._db.read() as conn:
            row = (await conn.execute(query)).mappings().first()
        if row is None or row["revoked_at"] is not None:
            return None
        if not hmac.compare_digest(row["secret_hash"], _hash(secret)):
            return None
        return Principal(
            workspace_id=row["workspace_id"],
            workspace_name=row["workspace_name"],
            role=Role(row["role"]),
            key_id=row["id"],
            key_name=row["name"],
        )
