"""`stepwell dlq ...`: list and redrive dead letters."""

from __future__ import annotations

import click

from stepwell.app import App
from stepwell.cli.common import DB_HELP, console, existing_app, main, warn
from stepwell.cli.remote import endpoint, remote_options
from stepwell.errors import RunNotFound
from stepwell.render import dead_letters_table


@main.group()
def dlq() -> None:
    """The dead-letter list: runs that failed for good, and their redrive.

    \b
    Examples:
      stepwell dlq ls
      stepwell dlq redrive RUN_ID
    """


@dlq.command("ls")
@click.option("--function", default=None, help="only the dead letters of this function")
@click.option("--limit", default=100, show_default=True, help="list at most this many, newest first")
@click.option("--database-url", envvar="STEPWELL_DATABASE_URL", help=DB_HELP)
@remote_options
def dlq_ls(function: str | None, limit: int, database_url: str | None, server: str | None, token: str | None) -> None:
    """List dead letters, newest first.

    \b
    Example:
      stepwell dlq ls --function transcribe-audio
    """
    app = endpoint(server, token, lambda: existing_app(database_url))
    entries = app.dead_letters(function=function, limit=limit)
    if not entries:
        where = app.database if isinstance(app, App) else server
        console.print(f"no dead letters in {where}", highlight=False, soft_wrap=True)
        return
    console.print(dead_letters_table(entries, app.store.now() if isinstance(app, App) else None))


@dlq.command("redrive")
@click.argument("run_ids", nargs=-1)
@click.option("--function", default=None, help="redrive every dead letter of this function")
@click.option("--database-url", envvar="STEPWELL_DATABASE_URL", help=DB_HELP)
@remote_options
def dlq_redrive(
    run_ids: tuple[str, ...], function: str | None, database_url: str | None, server: str | None, token: str | None
) -> None:
    """Re-run dead letters from their failed step (each entry once); RUN_IDS may be unique prefixes.

    An id that names no run is an error and nothing is redriven; a run that is not (or no longer)
    a dead letter is a warning.

    \b
    Examples:
      stepwell dlq redrive 01JD9Z3K4M5N6P7Q8R9S0T1V2W
      stepwell dlq redrive --function transcribe-audio
    """
    if not run_ids and not function:
        raise click.UsageError("name RUN_IDS or --function")
    if server:
        redriven = endpoint(server, token, lambda: existing_app(database_url)).redrive(list(run_ids), function=function)
        console.print(f"redriven {len(redriven)} run(s)" + (f": {', '.join(redriven)}" if redriven else ""))
        return
    app = existing_app(database_url)
    full, unknown = [], []
    for run_id in run_ids:
        try:
            full.append(app.resolve_run_id(run_id))
        except RunNotFound:
            unknown.append(run_id)
    if unknown:
        raise click.ClickException(
            f"no run{'s' if len(unknown) > 1 else ''} {', '.join(repr(i) for i in unknown)} in {app.database}; "
            "nothing was redriven"
        )
    redriven = app.redrive(full, function=function)
    for run_id in full:
        if run_id not in redriven:
            status = app.get_run(run_id).status.value
            warn(f"run {run_id} is {status}, not a dead letter waiting for redrive: left as it is")
    if function and not redriven and not run_ids:
        warn(f"no dead letter of function {function!r} to redrive in {app.database}")
    console.print(f"redriven {len(redriven)} run(s)" + (f": {', '.join(redriven)}" if redriven else ""))
