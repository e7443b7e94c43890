"""`stepwell runs ...`: list, show, cancel and replay runs."""

from __future__ import annotations

import time

import click
import orjson

from stepwell.app import App
from stepwell.cli.common import DB_HELP, console, existing_app, main, optional_app
from stepwell.cli.observe import resolve, show_run
from stepwell.cli.remote import endpoint, remote_options
from stepwell.render import run_timeline, runs_table


@main.group()
def runs() -> None:
    """List, show, cancel and replay runs.

    \b
    Examples:
      stepwell runs ls --status failed
      stepwell runs show RUN_ID
    """


@runs.command("ls")
@click.option("--function", default=None, help="only runs of this function")
@click.option(
    "--status",
    default=None,
    type=click.Choice(["queued", "running", "sleeping", "waiting", "completed", "failed", "cancelled"]),
    help="only runs in this status",
)
@click.option("--event", "event_id", default=None, help="only the runs this event started")
@click.option("--key", default=None, help="runs of this ordering key")
@click.option("--limit", default=50, show_default=True, help="list at most this many")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
@click.option("--watch", "watch", is_flag=True, help="refresh every 2 seconds until Ctrl-C")
@click.option("--database-url", envvar="STEPWELL_DATABASE_URL", help=DB_HELP)
@remote_options
def runs_ls(
    function: str | None,
    status: str | None,
    event_id: str | None,
    key: str | None,
    limit: int,
    as_json: bool,
    watch: bool,
    database_url: str | None,
    server: str | None,
    token: str | None,
) -> None:
    """List runs, newest first (ids shown short: any unique prefix is accepted).

    \b
    Examples:
      stepwell runs ls
      stepwell runs ls --function transcribe-audio --status failed --limit 20
      stepwell runs ls --json | jq .status
    """
    app = endpoint(server, token, lambda: existing_app(database_url))
    now = app.store.now if isinstance(app, App) else lambda: None
    if watch:
        from rich.live import Live

        def table() -> object:
            found = app.runs(function=function, status=status, event_id=event_id, key=key, limit=limit)
            return runs_table(found, now())

        with Live(table(), console=console, refresh_per_second=2) as live:  # type: ignore[arg-type]
            try:
                while True:
                    time.sleep(2)
                    live.update(table())  # type: ignore[arg-type]
            except KeyboardInterrupt:
                return
    found = app.runs(function=function, status=status, event_id=event_id, key=key, limit=limit)
    if as_json:
        for run in found:
            click.echo(
                orjson.dumps(
                    {
                        "id": run.id,
                        "function": run.function,
                        "status": run.status.value,
                        "attempt": run.attempt,
                        "output": run.output,
                        "error": str(run.error) if run.error else None,
                    }
                )
            )
        return
    if not found:
        where = app.database if isinstance(app, App) else server
        console.print(f"no runs in {where}", highlight=False, soft_wrap=True)
        return
    console.print(runs_table(found, now()))


@runs.command("show")
@click.argument("run_id")
@click.option("--database-url", envvar="STEPWELL_DATABASE_URL", help=DB_HELP)
@remote_options
def runs_show(run_id: str, database_url: str | None, server: str | None, token: str | None) -> None:
    """Show a run: steps, input, current step, waiting reason, errors with traceback, logs.

    RUN_ID may be any unique prefix of the id (a whole id with --server).

    \b
    Example:
      stepwell runs show 01JD9Z3K
    """
    if not server:
        app = existing_app(database_url)
        show_run(app, app.get_run(resolve(app, run_id)))
        return
    client = endpoint(server, token, lambda: existing_app(database_url))
    run = client.get_run(run_id)
    fan_outs = {s.id: client.fan_out_progress(run.id, s.id) for s in run.steps if s.kind == "fan_out"}
    console.print(run_timeline(run, fan_outs))
    if run.waiting_reason:
        console.print(f"[bold]waiting:[/] {run.waiting_reason}")
    if run.output is not None:
        console.print("output:", run.output)
    for number, error in enumerate(run.errors, 1):
        console.print(f"[red]error {number}:[/] {error}")


@runs.command("cancel")
@click.argument("run_ids", nargs=-1, required=True)
@click.option("--database-url", envvar="STEPWELL_DATABASE_URL", help=DB_HELP)
def runs_cancel(run_ids: tuple[str, ...], database_url: str | None) -> None:
    """Cancel runs that have not ended.

    \b
    Example:
      stepwell runs cancel 01JD9Z3K4M5N6P7Q8R9S0T1V2W
    """
    app = existing_app(database_url)
    ids = [resolve(app, run_id) for run_id in run_ids]  # an unknown id is an error before anything is cancelled
    for full in ids:
        console.print(f"{full}: {'cancelled' if app.cancel(full) else 'already ended'}")


@runs.command("replay")
@click.argument("run_id")
@optional_app("optional: the app that defines the function (else its definition is read from the registry)")
@click.option("--database-url", envvar="STEPWELL_DATABASE_URL", help=DB_HELP)
def runs_replay(run_id: str, app_target: str | None, database_url: str | None) -> None:
    """Start a new run of the same function from the same input, from scratch; RUN_ID may be a prefix.

    \b
    Example:
      stepwell runs replay 01JD9Z3K4M5N6P7Q8R9S0T1V2W
    """
    app = existing_app(database_url, app_target)
    console.print(f"new run {app.replay(resolve(app, run_id))}")
