"""`stepwell runs ...`: list, show, cancel and replay runs."""

from __future__ import annotations

import click
import orjson

from stepwell.cli.common import APP_HELP, DB_HELP, console, existing_app, main
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
@click.option("--database-url", envvar="STEPWELL_DATABASE_URL", help=DB_HELP)
def runs_ls(
    function: str | None,
    status: str | None,
    event_id: str | None,
    key: str | None,
    limit: int,
    as_json: bool,
    database_url: str | None,
) -> None:
    """List runs, newest first.

    \b
    Examples:
      stepwell runs ls
      stepwell runs ls --function transcribe-audio --status failed --limit 20
      stepwell runs ls --json | jq .status
    """
    app = existing_app(database_url)
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
        console.print(f"no runs in {app.database}", highlight=False, soft_wrap=True)
        return
    console.print(runs_table(found))


@runs.command("show")
@click.argument("run_id")
@click.option("--database-url", envvar="STEPWELL_DATABASE_URL", help=DB_HELP)
def runs_show(run_id: str, database_url: str | None) -> None:
    """Show a run and its step timeline.

    \b
    Example:
      stepwell runs show 01JD9Z3K4M5N6P7Q8R9S0T1V2W
    """
    app = existing_app(database_url)
    run = app.get_run(run_id)
    fan_outs = {s.id: app.fan_out_progress(run.id, s.id) for s in run.steps if s.kind == "fan_out"}
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
    for run_id in run_ids:
        app.get_run(run_id)  # an unknown id is an error before anything is cancelled
    for run_id in run_ids:
        console.print(f"{run_id}: {'cancelled' if app.cancel(run_id) else 'already ended'}")


@runs.command("replay")
@click.argument("run_id")
@click.option("--app", "app_target", envvar="STEPWELL_APP", required=True, metavar="MODULE:APP", help=APP_HELP)
@click.option("--database-url", envvar="STEPWELL_DATABASE_URL", help=DB_HELP)
def runs_replay(run_id: str, app_target: str, database_url: str | None) -> None:
    """Start a new run of the same function from the same input, from scratch.

    \b
    Example:
      stepwell runs replay --app sermons:app 01JD9Z3K4M5N6P7Q8R9S0T1V2W
    """
    console.print(f"new run {existing_app(database_url, app_target).replay(run_id)}")
