"""The `tallyql` command: serve, migrate, keys, demo, export-schema."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from tallyql.auth.principal import Role
from tallyql.config import Settings, load_settings
from tallyql.first_query import FIRST_QUERY
from tallyql.progress import Progress

T = TypeVar("T")


def _settings(**overrides: Any) -> Settings:
    """The settings, with the command's flags; a PostgreSQL database that does not exist yet is
    created first (when the role may; otherwise one line says how)."""
    try:
        settings = load_settings().with_overrides(**overrides)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    from tallyql.storage.dialect import Dialect  # imports SQLAlchemy: only when it runs

    if Dialect.of(settings.resolved_database_url).server:
        from tallyql.storage.bootstrap import DatabaseSetupError, ensure_postgres_database

        try:
            created = run_async(ensure_postgres_database(settings.resolved_database_url))
        except DatabaseSetupError as exc:
            raise click.ClickException(str(exc)) from None
        if created:
            click.echo(created, err=True)
    return settings


def _progress(total: int) -> Progress:
    """A progress bar on a terminal, plain lines every few seconds otherwise."""
    return Progress(total, "events", stream=sys.stderr)


database_option = click.option(
    "--database-url", default=None, help="sqlite:///path or postgresql://... (TALLYQL_DATABASE_URL)"
)
data_dir_option = click.option(
    "--data-dir",
    default=None,
    type=click.Path(path_type=Path),
    help="Directory of the embedded SQLite database (TALLYQL_DATA_DIR).",
)


@click.group()
@click.version_option(package_name="tallyql")
def main() -> None:
    """tallyql: GraphQL analytics for LLM, tool and agent traffic."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)


@main.command()
@click.option("--host", default=None, help="Interface to listen on (TALLYQL_HOST).")
@click.option("--port", default=None, type=int, help="Port (TALLYQL_PORT).")
@database_option
@data_dir_option
@click.option("--demo", is_flag=True, help="Seed 30 days of demo traffic and print an admin key.")
@click.option("--demo-events", default=100_000, show_default=True, help="Events --demo seeds.")
def serve(
    host: str | None,
    port: int | None,
    database_url: str | None,
    data_dir: Path | None,
    demo: bool,
    demo_events: int,
) -> None:
    """Run the server (applies migrations first)."""
    import uvicorn

    from tallyql.app import create_app

    settings = _settings(host=host, port=port, database_url=database_url, data_dir=data_dir)
    if demo:
        from tallyql.demo.load import seed_for_serve

        progress = _progress(demo_events)
        key = run_async(seed_for_serve(settings, demo_events, progress=progress.update))
        if progress.done:
            progress.finish()
        base = f"http://{settings.host}:{settings.port}"
        click.echo(f"\nDemo workspace ready. Admin API key (shown once):\n\n  {key}\n")
        # the fragment never reaches the server, and the console wipes it from the address bar
        click.echo(f"Console (signs in with the key): {base}/#key={key}")
        click.echo(f"GraphiQL: {base}/graphql")
        click.echo("Paste this into GraphiQL's headers pane (or give the key when it asks):\n")
        click.echo(f'  {{"Authorization": "Bearer {key}"}}\n')
        click.echo("and run the first query:\n")
        click.echo(FIRST_QUERY + "\n")
    app = create_app(settings)
    tune_gc()
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        ws_per_message_deflate=False,  # compressing every copy of a live item costs more
    )


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine on uvloop (what `serve` runs on, through uvicorn) when it is
    installed, else on asyncio's own loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] installs it on Linux and macOS
        return asyncio.run(coro)
    return uvloop.run(coro)


def tune_gc() -> None:
    """Fewer cyclic garbage collections for a long-running server.

    Ingest (and the demo loader) allocates tens of objects per event, nearly all freed by
    reference counting; with the default thresholds the collector still ran every 700
    allocations and walked the whole heap every few batches, about a third of ingest's CPU
    time. Objects that exist at start
    (modules, the schema) are frozen out of collection altogether. The youngest generation is
    collected between requests (`http/idle_gc.py`); its threshold is high enough that a heavy
    dashboard request, which leaves about 100,000 objects in cycles, does not reach it halfway
    (at 100,000 a security overview paused for 50 to 70 ms in one request of twenty; ingest
    runs as fast at either)."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(400_000, 50, 100)


@main.command()
@database_option
@data_dir_option
def migrate(database_url: str | None, data_dir: Path | None) -> None:
    """Apply database migrations."""
    from tallyql.storage.database import Database
    from tallyql.storage.migrate import current_revision, upgrade

    settings = _settings(database_url=database_url, data_dir=data_dir)

    async def run() -> str | None:
        db = Database(settings.resolved_database_url)
        try:
            await upgrade(db)
            return await current_revision(db)
        finally:
            await db.dispose()

    click.echo(f"database at revision {run_async(run())}")


@main.group()
def keys() -> None:
    """Create, list and revoke API keys."""


async def _with_keys(settings: Settings, action: Any) -> Any:
    from tallyql.auth.keys import KeyService
    from tallyql.storage.database import Database
    from tallyql.storage.migrate import upgrade

    db = Database(settings.resolved_database_url)
    try:
        await upgrade(db)
        return await action(KeyService(db))
    finally:
        await db.dispose()


@keys.command("create")
@click.option("--workspace", required=True, help="Workspace name (created if needed).")
@click.option("--role", required=True, type=click.Choice([r.value for r in Role]))
@click.option("--name", default=None, help="A label for the key.")
@database_option
@data_dir_option
def keys_create(
    workspace: str, role: str, name: str | None, database_url: str | None, data_dir: Path | None
) -> None:
    """Create a key; the key alone is printed on the last line."""
    settings = _settings(database_url=database_url, data_dir=data_dir)
    key, info = run_async(
        _with_keys(settings, lambda ks: ks.create(workspace, Role(role), name, actor="cli"))
    )
    click.echo(f"created {info.role.value} key {info.id} ({info.name}) in workspace {workspace}")
    click.echo("the secret is shown only now; store it safely:", err=True)
    click.echo(key)


@keys.command("list")
@click.option("--workspace", default=None, help="Only this workspace.")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked keys.")
@database_option
@data_dir_option
def keys_list(
    workspace: str | None, include_revoked: bool, database_url: str | None, data_dir: Path | None
) -> None:
    """List keys (never their secrets)."""
    settings = _settings(database_url=database_url, data_dir=data_dir)
    infos = run_async(_with_keys(settings, lambda ks: ks.list(include_revoked=include_revoked)))
    for info in infos:
        if workspace and info.workspace_name != workspace:
            continue
        state = f"revoked {info.revoked_at:%Y-%m-%d}" if info.revoked_at else "active"
        click.echo(f"{info.id}\t{info.workspace_name}\t{info.role.value}\t{info.name}\t{state}")


@keys.command("revoke")
@click.argument("key_id")
@database_option
@data_dir_option
def keys_revoke(key_id: str, database_url: str | None, data_dir: Path | None) -> None:
    """Revoke a key by its id (the part after tq_)."""
    settings = _settings(database_url=database_url, data_dir=data_dir)
    info = run_async(_with_keys(settings, lambda ks: ks.revoke(key_id, actor="cli")))
    if info is None:
        raise click.ClickException(f"no active key {key_id}")
    click.echo(f"revoked {key_id}")


@main.command()
@click.option("--events", "count", default=100_000, show_default=True, help="Events to write.")
@click.option("--days", default=30, show_default=True, help="Days of history, ending now.")
@click.option("--seed", default=42, show_default=True, help="Same seed, same traffic.")
@click.option("--workspace", default="demo", show_default=True)
@database_option
@data_dir_option
def demo(
    count: int,
    days: int,
    seed: int,
    workspace: str,
    database_url: str | None,
    data_dir: Path | None,
) -> None:
    """Write realistic synthetic traffic into a workspace (bulk path)."""
    from tallyql.demo.load import load_demo_into

    settings = _settings(database_url=database_url, data_dir=data_dir)
    tune_gc()
    progress = _progress(count)
    report = run_async(load_demo_into(settings, workspace, count, days, seed, progress.update))
    progress.finish()
    click.echo(
        f"wrote {report.accepted} events ({report.duplicates} already present) into "
        f"workspace {workspace} in {report.seconds:.1f} s ({report.rate:,.0f} events/s)"
    )


@main.group()
def rollups() -> None:
    """Maintain rollups."""


@rollups.command("rebuild")
@click.option("--from", "start", default=None, help="Start (RFC 3339); default: first event.")
@click.option("--to", "end", default=None, help="End (RFC 3339); default: now.")
@click.option("--workspace", default=None, help="Only this workspace.")
@click.option("--sessions", is_flag=True, help="Also recompute the sessions tables.")
@database_option
@data_dir_option
def rollups_rebuild(
    start: str | None,
    end: str | None,
    workspace: str | None,
    sessions: bool,
    database_url: str | None,
    data_dir: Path | None,
) -> None:
    """Recompute rollups from raw events (the range widens to whole UTC days)."""
    from tallyql.storage.rollups.rebuild import rebuild_command

    settings = _settings(database_url=database_url, data_dir=data_dir)
    try:
        report = run_async(rebuild_command(settings, start, end, workspace, sessions))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"rebuilt rollups from {report.start:%Y-%m-%d} to {report.end:%Y-%m-%d} "
        f"over {report.events:,} events" + (" and all sessions" if report.sessions_rebuilt else "")
    )


@main.command("export-schema")
@click.option("--output", "-o", type=click.Path(path_type=Path), default=None)
def export_schema(output: Path | None) -> None:
    """Print the GraphQL SDL (or write it to a file)."""
    from tallyql.schema import export_sdl

    sdl = export_sdl()
    if output is None:
        sys.stdout.write(sdl)
    else:
        output.write_text(sdl)


if __name__ == "__main__":  # pragma: no cover
    main()


@main.group()
def users() -> None:
    """Manage the user directory."""


@users.command("set-department")
@click.option("--workspace", required=True, help="Workspace name (created if needed).")
@click.option(
    "--user", "user_ids", required=True, multiple=True, help="A user id (repeat for several)."
)
@click.option("--department", default=None, help="The department; leave out to clear it.")
@database_option
@data_dir_option
def users_set_department(
    workspace: str,
    user_ids: tuple[str, ...],
    department: str | None,
    database_url: str | None,
    data_dir: Path | None,
) -> None:
    """Set users' department (cost centre), creating unknown users; events stored from now on
    carry it. Audited like upsertUsers."""
    from tallyql.storage.audit import AuditRecord, insert_audit_records
    from tallyql.storage.database import Database
    from tallyql.storage.directory import set_user_departments
    from tallyql.storage.migrate import upgrade
    from tallyql.storage.workspaces import get_or_create_workspace

    settings = _settings(database_url=database_url, data_dir=data_dir)

    async def run() -> dict[str, str | None]:
        db = Database(settings.resolved_database_url)
        try:
            await upgrade(db)
            async with db.write() as conn:
                workspace_id = await get_or_create_workspace(conn, workspace)
                before = await set_user_departments(conn, workspace_id, user_ids, department)
                audits = [
                    AuditRecord(
                        workspace_id=workspace_id,
                        action="update",
                        resource_type="user",
                        resource_id=user_id,
                        actor_id="cli",
                        details={
                            "before": {"department": old},
                            "after": {"department": department},
                        },
                    )
                    for user_id, old in before.items()
                    if old != department
                ]
                await insert_audit_records(conn, audits)
            return before
        finally:
            await db.dispose()

    before = run_async(run())
    for user_id, old in before.items():
        click.echo(f"{user_id}: {old or '-'} -> {department or '-'}")
