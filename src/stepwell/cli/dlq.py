"""`stepwell dlq ...`: list and redrive dead letters."""

from __future__ import annotations

import click

from stepwell.app import App
from stepwell.cli.common import DB_HELP, console, main, plain_app
from stepwell.cli.remote import endpoint, remote_options
from stepwell.render import dead_letters_table


@main.group()
def dlq() -> None:
    """The dead-letter list."""


@dlq.command("ls")
@click.option("--function", default=None)
@click.option("--limit", default=100, show_default=True)
@click.option("--database-url", envvar="STEPWELL_DATABASE_URL", help=DB_HELP)
@remote_options
def dlq_ls(function: str | None, limit: int, database_url: str | None, server: str | None, token: str | None) -> None:
    """List dead letters."""
    app = endpoint(server, token, lambda: plain_app(database_url, None))
    now = app.store.now() if isinstance(app, App) else None
    console.print(dead_letters_table(app.dead_letters(function=function, limit=limit), now))


@dlq.command("redrive")
@click.argument("run_ids", nargs=-1)
@click.option("--function", default=None, help="redrive every dead letter of this function")
@click.option("--database-url", envvar="STEPWELL_DATABASE_URL", help=DB_HELP)
@remote_options
def dlq_redrive(
    run_ids: tuple[str, ...], function: str | None, database_url: str | None, server: str | None, token: str | None
) -> None:
    """Re-run dead letters from their failed step (each entry once); RUN_IDS may be unique prefixes."""
    if not run_ids and not function:
        raise click.UsageError("name RUN_IDS or --function")
    app = endpoint(server, token, lambda: plain_app(database_url, None))
    if isinstance(app, App):
        run_ids = tuple(app.resolve_run_id(run_id) for run_id in run_ids)
    redriven = app.redrive(list(run_ids), function=function)
    console.print(f"redriven {len(redriven)} run(s)")
