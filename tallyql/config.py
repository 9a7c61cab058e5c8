"""Every setting of tallyql, read from TALLYQL_* environment variables (CLI flags override).

The README's settings table lists the same names, defaults and meanings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path(".tallyql")
    """Where the embedded SQLite database lives (TALLYQL_DATA_DIR)."""
    database_url: str = ""
    """sqlite:///path or postgresql://user@host/db; empty means SQLite under data_dir."""
    database_read_urls: str = ""
    """PostgreSQL hot standbys of database_url, comma-separated URLs: GraphQL queries, exports,
    charts, ask and report rendering read from one that has replayed every commit made before
    the request (storage/standbys.py); empty: every read goes to the primary."""
    read_wait_ms: float = 250.0
    """How long a request may wait for a standby to replay the commits it must show before
    the primary answers it instead (0: never wait)."""
    read_max_lag_seconds: float = 10.0
    """A standby whose replay is further behind the primary than this is skipped until it
    catches up."""
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "info"
    max_body_bytes: int = 64 * 1024 * 1024
    """Largest accepted ingest body, after gzip decompression."""
    max_batch_events: int = 10_000
    """Most events accepted in one ingest call (at most 10,000)."""
    writer_queue_events: int = 200_000
    """Events waiting for the writer before ingest answers 503 with Retry-After."""
    writer_batch_events: int = 20_000
    """Most events the writer commits in one transaction (group commit)."""
    writer_connections: int = 3
    """PostgreSQL: batch transactions in flight at once (while one commits, the others run);
    SQLite has one writer."""
    rollup_compaction_seconds: float = 1.0
    """PostgreSQL: how often staged batch aggregates (rollup deltas) are compacted into the
    rollup tables. Queries read both, so this changes speed, never results."""
    db_pool_size: int = 20
    """Read connections (SQLite) or pooled connections (PostgreSQL)."""
    key_cache_seconds: float = 10.0
    """How long a verified API key is trusted before it is checked again (revocation delay)."""
    graphql_max_depth: int = 12
    graphql_max_aliases: int = 30
    graphql_max_tokens: int = 5_000
    graphql_cache_size: int = 256
    """Entries of the parser and validation caches."""
    share_identical_queries: bool = True
    """Identical GraphQL queries (workspace, role, document, variables) asked while one is
    being computed share one computation started after all of them (http/shared_answers.py)."""
    introspection: str = "all"
    """Who may introspect the GraphQL schema (__schema, __type): `all` keys, `admin` keys
    only, or nobody (`off`); refused operations fail with INTROSPECTION_DISABLED."""
    metrics_token: str = ""
    """When set, GET /metrics requires `Authorization: Bearer <this token>` (401 otherwise);
    empty: /metrics is open."""
    graphql_max_body_bytes: int = 4 * 1024 * 1024
    """Largest /graphql request body (query, variables and all), refused with 413 before it is
    parsed; ingestEvents' 10,000 events fit (bulk ingest belongs on /v1/events)."""
    graphql_max_query_bytes: int = 256 * 1024
    """Largest GraphQL document (the query text), refused with 413 before it is parsed, so
    that whitespace, comments or string literals cost nothing to refuse."""
    cost_request_limit: int = 20_000
    """Most cost points one GraphQL request may spend (README, "Query cost"); a field that
    would go beyond fails with COST_LIMIT before it reads anything."""
    cost_key_limit_per_minute: int = 60_000
    """Cost points each API key may spend per minute, shared by its requests (a bucket that
    refills continuously); beyond it fields fail with RATE_LIMITED and HTTP 429."""
    key_max_in_flight: int = 32
    """Most requests one API key may have in flight at once (answers not yet sent, streamed
    exports included; subscriptions excluded); beyond it a request is answered 429
    RATE_LIMITED with Retry-After at once (0: no limit)."""
    request_deadline_seconds: float = 30.0
    """How long a GraphQL request may run: after it no new statement starts (the field fails
    with DEADLINE_EXCEEDED)."""
    db_statement_timeout_seconds: float = 15.0
    """Longest read statement (PostgreSQL statement_timeout on read connections; SQLite a
    progress handler); beyond it the statement is cancelled and the field fails with
    QUERY_TIMEOUT (0: no limit)."""
    db_workspace_share: float = 0.5
    """The share of the read connections one workspace may hold at once (at least one), so
    that one tenant's heavy requests cannot starve the others; the rest wait their turn."""
    live_queue_size: int = 1000
    """Items a live subscriber may have waiting; beyond it events are dropped for that
    subscriber (it receives a Lagged item with the count)."""
    live_max_age_seconds: float = 10.0
    """Seconds after its commit that an event may still be sent to a live subscriber; a
    subscriber further behind has the older events dropped (it receives a Lagged item)."""
    live_send_buffer_mb: float = 64.0
    """MiB of frames that all live WebSocket subscribers of the process may hold unsent
    together (each its even share, 16 to 512 KiB); a client whose unsent frames pass its share
    misses windows and is told Lagged (live/batches.py SendBudget)."""
    live_delivery_share: float = 0.5
    """The share of the event loop's time that live deliveries may use while other work waits
    (live/pacer.py); subscribers that need more fall behind and receive Lagged items."""
    live_group_refresh_seconds: float = 30.0
    """How often live filters reload the members of the groups they filter on."""
    live_audit_poll_seconds: float = 0.5
    """SQLite: how often new audit events are looked for (PostgreSQL is told by NOTIFY)."""
    live_cross_replica: bool = True
    """PostgreSQL: relay live events between server processes with LISTEN/NOTIFY."""
    budget_interval_seconds: float = 60.0
    """How often every budget is checked (budgets are also checked after ingest)."""
    budget_debounce_seconds: float = 1.0
    """After ingest into a workspace, wait this long (gathering more) before checking."""
    alert_interval_seconds: float = 60.0
    """How often alert rules are evaluated."""
    heartbeat_seconds: float = 5.0
    """How often this process records its health (writer backlog, last commit, degraded jobs)
    in the database, where health alert rules read every replica's (0: never)."""
    webhook_timeout_seconds: float = 10.0
    """Timeout of one webhook delivery attempt."""
    webhook_max_attempts: int = 8
    """Attempts of a webhook delivery before it is marked failed."""
    webhook_backoff_seconds: float = 5.0
    """Delay before the first retry; it doubles at every further failure."""
    webhook_backoff_max_seconds: float = 3600.0
    """Longest delay between two attempts."""
    webhook_poll_seconds: float = 5.0
    """How often due retries (and other replicas' deliveries) are looked for."""
    webhook_allow_private: bool = False
    """Let webhooks reach loopback, private, link-local and other non-public addresses (a
    receiver inside the operator's network). Off: such URLs are refused at creation and every
    delivery resolves its host and refuses a non-public address (tallyql/webhooks/addresses.py)."""
    smtp_url: str = ""
    """The SMTP server email goes through (alert and budget channels of format EMAIL):
    smtp://[user:password@]host[:port] (STARTTLS when offered; `?starttls=require` or `off`)
    or smtps://... (TLS from the start); empty: email channels cannot be created."""
    mail_from: str = "tallyql@localhost"
    """The From address of tallyql's email."""
    openrouter_base_url: str = "https://openrouter.ai/api/v1"
    """Where OpenRouter's API is (provider activity sync, credits and key fields)."""
    provider_sync_poll_seconds: float = 300.0
    """How often provider connections due for their daily sync are looked for (0: none)."""
    report_poll_seconds: float = 30.0
    """How often due scheduled reports are looked for (0: this process runs none)."""
    operator_workspace: str = "default"
    """Workspace whose admin keys may ask across workspaces (TALLYQL_OPERATOR_WORKSPACE)."""
    price_refresh_seconds: float = 30.0
    """How often price overrides are reloaded (other replicas see a change within this)."""
    retention_days: int = 90
    """Days of raw events, payloads, audit events and sessions kept (0: forever)."""
    rollup_retention_days: int = 400
    """Days of rollups (hour, day and week rows) kept (0: forever); never fewer than raw data."""
    retention_interval_seconds: float = 3600.0
    """How often the retention job purges (0: never); the first run comes at most 5 min
    after start."""
    retention_batch_rows: int = 5_000
    """Rows deleted per short transaction by the retention job."""
    max_event_age_days: int = 0
    """How far back an ingested event's timestamp may be, in days; older events are rejected
    one by one (each would need storage, a partition on PostgreSQL, for its day). 0: the raw
    retention window (retention_days), or 3,650 days when retention keeps everything."""

    @property
    def event_age_days(self) -> int:
        """The bound `max_event_age_days` stands for."""
        if self.max_event_age_days > 0:
            return self.max_event_age_days
        return self.retention_days if self.retention_days > 0 else 3650

    cors_origins: str = ""
    """Origins whose pages may call the API (CORS), comma-separated, e.g.
    `https://dash.example.com,http://localhost:5173`; `*` for any; empty: no CORS headers."""

    @property
    def cors_origin_list(self) -> tuple[str, ...]:
        return parse_cors_origins(self.cors_origins)

    @property
    def read_url_list(self) -> tuple[str, ...]:
        """The standbys' URLs, with the async driver."""
        urls = (u.strip() for u in self.database_read_urls.split(","))
        return tuple(normalize_database_url(u) for u in urls if u)

    @property
    def resolved_database_url(self) -> str:
        """The SQLAlchemy URL with the async driver for the configured database."""
        url = self.database_url or f"sqlite:///{self.data_dir / 'tallyql.db'}"
        return normalize_database_url(url)

    def with_overrides(self, **overrides: Any) -> Settings:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


POSTGRES_DRIVER = "postgresql+asyncpg://"
"""How a PostgreSQL URL starts once normalised (read URLs must be PostgreSQL hot standbys)."""


def names_postgresql_server(url: str) -> bool:
    """Whether `url` names a PostgreSQL server (storage/dialect.py holds every SQL difference;
    this is the settings' own check of what an operator typed)."""
    try:
        return normalize_database_url(url).startswith(POSTGRES_DRIVER)
    except ValueError:
        return False


def normalize_database_url(url: str) -> str:
    for prefix, driver in (
        (POSTGRES_DRIVER, None),
        ("postgresql://", POSTGRES_DRIVER),
        ("postgres://", POSTGRES_DRIVER),
        ("sqlite+aiosqlite://", None),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if url.startswith(prefix):
            return url if driver is None else driver + url[len(prefix) :]
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:///path or postgresql://...")


def parse_cors_origins(raw: str) -> tuple[str, ...]:
    """The origins of TALLYQL_CORS_ORIGINS; ValueError for anything that is not
    `scheme://host[:port]` or `*` (a path or a trailing slash would never match a browser's
    Origin header, so it is refused rather than silently ignored)."""
    origins = tuple(part.strip() for part in raw.split(",") if part.strip())
    for origin in origins:
        if origin == "*":
            continue
        parts = urlsplit(origin)
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.path
            or parts.query
            or parts.fragment
            or parts.username
        ):
            raise ValueError(
                f"TALLYQL_CORS_ORIGINS: {origin!r} is not an origin "
                "(scheme://host[:port], no path) or *"
            )
    return origins


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Settings from TALLYQL_<NAME> variables; unknown or malformed values raise ValueError."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in fields(Settings):
        raw = env.get(f"TALLYQL_{f.name.upper()}")
        if raw is None or raw == "":
            continue
        default = f.default
        try:
            if isinstance(default, bool):
                values[f.name] = raw.lower() in {"1", "true", "yes", "on"}
            elif isinstance(default, int):
                values[f.name] = int(raw)
            elif isinstance(default, float):
                values[f.name] = float(raw)
            elif isinstance(default, Path):
                values[f.name] = Path(raw)
            else:
                values[f.name] = raw
        except ValueError:
            raise ValueError(f"TALLYQL_{f.name.upper()}={raw!r} is not a valid value") from None
    settings = Settings(**values)
    if not 1 <= settings.max_batch_events <= 10_000:
        raise ValueError("TALLYQL_MAX_BATCH_EVENTS must be between 1 and 10000")
    if not 0 <= settings.max_event_age_days <= 36_500:
        raise ValueError("TALLYQL_MAX_EVENT_AGE_DAYS must be between 0 and 36500")
    if settings.introspection not in ("all", "admin", "off"):
        raise ValueError("TALLYQL_INTROSPECTION must be all, admin or off")
    if settings.graphql_max_body_bytes < 1024 or settings.graphql_max_query_bytes < 1024:
        raise ValueError("TALLYQL_GRAPHQL_MAX_BODY_BYTES and _MAX_QUERY_BYTES must be >= 1024")
    if settings.cost_request_limit < 1 or settings.cost_key_limit_per_minute < 1:
        raise ValueError("TALLYQL_COST_REQUEST_LIMIT and _KEY_LIMIT_PER_MINUTE must be >= 1")
    if settings.key_max_in_flight < 0:
        raise ValueError("TALLYQL_KEY_MAX_IN_FLIGHT must be >= 0 (0: no limit)")
    if settings.request_deadline_seconds <= 0 or settings.db_statement_timeout_seconds < 0:
        raise ValueError("TALLYQL_REQUEST_DEADLINE_SECONDS must be above 0, the timeout >= 0")
    if not 0.0 < settings.db_workspace_share <= 1.0:
        raise ValueError("TALLYQL_DB_WORKSPACE_SHARE must be above 0 and at most 1")
    if settings.live_max_age_seconds <= 0:
        raise ValueError("TALLYQL_LIVE_MAX_AGE_SECONDS must be above 0")
    if settings.live_send_buffer_mb <= 0:
        raise ValueError("TALLYQL_LIVE_SEND_BUFFER_MB must be above 0")
    parse_cors_origins(settings.cors_origins)
    if settings.read_url_list and not names_postgresql_server(settings.resolved_database_url):
        raise ValueError("TALLYQL_DATABASE_READ_URLS needs a PostgreSQL TALLYQL_DATABASE_URL")
    if not all(names_postgresql_server(u) for u in settings.read_url_list):
        raise ValueError("TALLYQL_DATABASE_READ_URLS must be postgresql:// URLs")
    if settings.read_wait_ms < 0 or settings.read_max_lag_seconds <= 0:
        raise ValueError("TALLYQL_READ_WAIT_MS must be >= 0, _MAX_LAG_SECONDS above 0")
    smtp = urlsplit(settings.smtp_url) if settings.smtp_url else None
    if smtp is not None and (smtp.scheme not in ("smtp", "smtps") or not smtp.hostname):
        raise ValueError("TALLYQL_SMTP_URL must be smtp://[user:password@]host[:port] or smtps://")
    if not 0.0 < settings.live_delivery_share <= 1.0:
        raise ValueError("TALLYQL_LIVE_DELIVERY_SHARE must be above 0 and at most 1")
    return settings
