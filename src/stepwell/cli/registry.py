"""`stepwell registry ...`: list the function registry, or register an app's functions (a deploy step)."""

from __future__ import annotations

import click
import orjson
from rich.table import Table

from stepwell.cli.common import DB_HELP, console, existing_app, load_app, main


@main.group()
def registry() -> None:
    """The function registry: what every app registered, which routes every event.

    \b
    Examples:
      stepwell registry ls
      stepwell registry sync sermons:app
    """


@registry.command("ls")
@click.option("--all", "show_all", is_flag=True, help="include retired functions")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per function, with its definition")
@click.option("--database-url", envvar="STEPWELL_DATABASE_URL", help=DB_HELP)
def registry_ls(show_all: bool, as_json: bool, database_url: str | None) -> None:
    """List the registered functions (served ones; --all adds the retired).

    \b
    Example:
      stepwell registry ls --all
    """
    found = [f for f in existing_app(database_url).functions() if show_all or f.retired_at is None]
    if as_json:
        for entry in found:
            line = {
                "app": entry.app,
                "name": entry.name,
                "version": entry.version,
                "retired_at": None if entry.retired_at is None else entry.retired_at.isoformat(),
                "paused_at": None if entry.paused_at is None else entry.paused_at.isoformat(),
                "definition": orjson.loads(entry.definition),
            }
            click.echo(orjson.dumps(line).decode())
        return
    table = Table(title=f"{len(found)} function(s)")
    for column in ("app", "function", "triggers", "version", "updated", "retired", "paused"):
        table.add_column(column, overflow="fold")
    for entry in found:
        document = orjson.loads(entry.definition)
        triggers = [*document["events"], *(f"cron {c['cron']} {c['tz']}" for c in document["crons"])]
        retired = "" if entry.retired_at is None else f"{entry.retired_at:%Y-%m-%d %H:%M:%S}"
        paused = "" if entry.paused_at is None else f"{entry.paused_at:%Y-%m-%d %H:%M:%S}"
        table.add_row(
            entry.app,
            entry.name,
            ", ".join(triggers),
            entry.version[:12],
            f"{entry.updated_at:%Y-%m-%d %H:%M:%S}",
            retired,
            paused,
        )
    console.print(table)


@registry.command("sync")
@click.argument("app_target", metavar="MODULE:APP")
@click.option("--database-url", envvar="STEPWELL_DATABASE_URL", help=DB_HELP)
def registry_sync(app_target: str, database_url: str | None) -> None:
    """Register the app's functions now (workers do it at start); prints what changed.

    \b
    Example:
      stepwell registry sync sermons:app
    """
    app = load_app(app_target, database_url)
    change = app.register()
    if not change.changed_anything:
        console.print(f"app {app.name}: up to date (registry generation {change.generation})")
        return
    for label, names in (("added", change.added), ("changed", change.changed), ("retired", change.retired)):
        if names:
            console.print(f"{label}: {', '.join(names)}")
    for name, previous in change.moved:
        console.print(f"moved: {name} (from app {previous})")
