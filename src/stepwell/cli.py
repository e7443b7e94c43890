"""`stepwell`: run workers, send events, inspect runs and dead letters, migrate."""

from __future__ import annotations

import importlib
import logging
import os
import signal
import subprocess
import sys
from typing import Any

import click
import orjson
from rich.logging import RichHandler

from stepwell.app import App, migration_sql
from stepwell.errors import StepwellError
from stepwell.render import dead_letters_table, make_console, run_timeline, runs_table

console = make_console()
_DB_HELP = "sqlite:///path.db or postgresql://...; default $STEPWELL_DATABASE_URL, else sqlite .stepwell/stepwell.db"


def load_app(target: str, database_url: str | None = None) -> App:
    """Import `module:attribute` (the current folder is importable) and return the App found there."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise click.BadParameter(f"{target!r} must look like module:app, e.g. examples.sermons:app")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise click.BadParameter(f"cannot import {module_name!r}: {err}") from None
    app = getattr(module, attribute, None)
    if not isinstance(app, App):
        raise click.BadParameter(f"{target!r} is not a stepwell.App (found {type(app).__name__})")
    if database_url:
        app.use_database(database_url)
    return app


def _plain_app(database_url: str | None, target: str | None) -> App:
    return load_app(target, database_url) if target else App("stepwell-cli", database_url=database_url)


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=make_console(stderr=True), show_path=False)],
    )


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except StepwellError as err:
            raise click.ClickException(str(err)) from None


@click.group(cls=_Group)
@click.version_option(package_name="stepwell")
def main() -> None:
    """Stepwell: durable, event-driven background jobs and workflows."""


def _worker_options(fn: Any) -> Any:
    fn = click.option("--database-url", envvar="STEPWELL_DATABASE_URL", help=_DB_HELP)(fn)
    fn = click.option("--concurrency", default=10, show_default=True, help="runs at once in this process")(fn)
    fn = click.option("--lease", default=30.0, show_default=True, help="lease (visibility timeout), seconds")(fn)
    fn = click.option("--poll-interval", default=0.5, show_default=True, help="seconds between polls when idle")(fn)
    fn = click.option("--shutdown-timeout", default=10.0, show_default=True, help="seconds to finish on SIGTERM")(fn)
    fn = click.option("--rescue-interval", default=5.0, show_default=True, help="seconds between lease rescues")(fn)
    return click.option("-v", "--verbose", is_flag=True)(fn)


def _run_worker(
    app_target: str,
    database_url: str | None,
    concurrency: int,
    lease: float,
    poll_interval: float,
    shutdown_timeout: float,
    rescue_interval: float,
    verbose: bool,
) -> None:
    from datetime import timedelta

    _logging(verbose)
    app = load_app(app_target, database_url)
    app.run_worker(
        concurrency=concurrency,
        lease=timedelta(seconds=lease),
        poll_interval=poll_interval,
        shutdown_timeout=shutdown_timeout,
        rescue_interval=rescue_interval,
    )
    os._exit(0)  # sync runs still stuck in user code must not hold the process: their leases are released


@main.command()
@click.argument("app_target", metavar="MODULE:APP")
@_worker_options
@click.option("--processes", default=1, show_default=True, help="worker processes to start")
def worker(app_target: str, processes: int, **options: Any) -> None:
    """Run a worker for the app's functions until SIGTERM/SIGINT."""
    if processes > 1:
        _spawn(app_target, processes, options)
        return
    _run_worker(app_target, **options)


def _spawn(app_target: str, processes: int, options: dict[str, Any]) -> None:
    argv = [sys.executable, "-m", "stepwell", "worker", app_target]
    for key, value in options.items():
        if value in (None, False):
            continue
        flag = "--" + key.replace("_", "-")
        argv += [flag] if value is True else [flag, str(value)]
    children = [subprocess.Popen(argv) for _ in range(processes)]

    def forward(signum: int, _frame: Any) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [child.wait() for child in children]
    sys.exit(max(codes))


@main.command()
@click.argument("app_target", metavar="MODULE:APP")
@_worker_options
def dev(app_target: str, **options: Any) -> None:
    """All in one process for development: worker and maintenance, SQLite by default."""
    console.print(f"[bold]stepwell dev[/] {app_target} · Ctrl-C to stop")
    _run_worker(app_target, **options)


@main.command()
@click.argument("name")
@click.argument("data", default="{}")
@click.option(
    "--app",
    "app_target",
    envvar="STEPWELL_APP",
    required=True,
    metavar="MODULE:APP",
    help="the app whose functions the event may trigger",
)
@click.option("--id", "event_id", default=None, help="idempotency id: a repeat is accepted and ignored")
@click.option("--database-url", envvar="STEPWELL_DATABASE_URL", help=_DB_HELP)
def send(name: str, data: str, app_target: str, event_id: str | None, database_url: str | None) -> None:
    """Send event NAME with JSON DATA; prints the event id."""
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError as err:
        raise click.BadParameter(f"DATA is not valid JSON: {err}") from None
    app = load_app(app_target, database_url)
    event_id = app.send(name, payload, id=event_id)
    record = app.event(event_id)
    console.print(f"event {event_id}: {record.disposition.value}, runs: {', '.join(record.run_ids) or 'none'}")


@main.group()
def runs() -> None:
    """List, show, cancel and replay runs."""


@runs.command("ls")
@click.option("--function", default=None)
@click.option(
    "--status",
    default=None,
    type=click.Choice(["queued", "running", "sleeping", "waiting", "completed", "failed", "cancelled"]),
)
@click.option("--event", "event_id", default=None)
@click.option("--key", default=None, help="runs of this ordering key")
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
@click.option("--database-url", envvar="STEPWELL_DATABASE_URL", help=_DB_HELP)
def runs_ls(
    function: str | None,
    status: str | None,
    event_id: str | None,
    key: str | None,
    limit: int,
    as_json: bool,
    database_url: str | None,
) -> None:
    """List runs, newest first."""
    app = _plain_app(database_url, None)
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
    console.print(runs_table(found))


@runs.command("show")
@click.argument("run_id")
@click.option("--database-url", envvar="STEPWELL_DATABASE_URL", help=_DB_HELP)
def runs_show(run_id: str, database_url: str | None) -> None:
    """Show a run and its step timeline."""
    app = _plain_app(database_url, None)
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
@click.option("--database-url", envvar="STEPWELL_DATABASE_URL", help=_DB_HELP)
def runs_cancel(run_ids: tuple[str, ...], database_url: str | None) -> None:
    """Cancel runs that have not ended."""
    app = _plain_app(database_url, None)
    for run_id in run_ids:
        console.print(f"{run_id}: {'cancelled' if app.cancel(run_id) else 'already ended'}")


@runs.command("replay")
@click.argument("run_id")
@click.option("--app", "app_target", envvar="STEPWELL_APP", required=True, metavar="MODULE:APP")
@click.option("--database-url", envvar="STEPWELL_DATABASE_URL", help=_DB_HELP)
def runs_replay(run_id: str, app_target: str, database_url: str | None) -> None:
    """Start a new run from the same input."""
    console.print(f"new run {load_app(app_target, database_url).replay(run_id)}")


@main.group()
def keys() -> None:
    """Operate one ordering key: pause, resume, drain, skip a parked dead letter."""


def _key_command(name: str, doc: str) -> None:
    @keys.command(name, help=doc)
    @click.argument("function")
    @click.argument("key")
    @click.option("--app", "app_target", envvar="STEPWELL_APP", required=True, metavar="MODULE:APP")
    @click.option("--database-url", envvar="STEPWELL_DATABASE_URL", help=_DB_HELP)
    def command(function: str, key: str, app_target: str, database_url: str | None) -> None:
        app = load_app(app_target, database_url)
        result = {"pause": app.pause_key, "resume": app.resume_key, "drain": app.drain_key, "skip": app.skip_key}[name](
            function, key
        )
        detail = {
            "drain": lambda r: f"cancelled {len(r)} run(s)",
            "skip": lambda r: "not parked" if r is None else f"the key moved on to {r or 'no run'}",
        }.get(name, lambda r: "done")(result)
        console.print(f"{function} key {key}: {name} — {detail}")


for _name, _doc in (
    ("pause", "Stop starting runs of the key (a run in progress carries on)."),
    ("resume", "Start runs of the key again."),
    ("drain", "Cancel every run of the key that has not started."),
    ("skip", "Move a parked key past its dead letter."),
):
    _key_command(_name, _doc)


@main.group()
def dlq() -> None:
    """The dead-letter list."""


@dlq.command("ls")
@click.option("--function", default=None)
@click.option("--limit", default=100, show_default=True)
@click.option("--database-url", envvar="STEPWELL_DATABASE_URL", help=_DB_HELP)
def dlq_ls(function: str | None, limit: int, database_url: str | None) -> None:
    """List dead letters."""
    console.print(dead_letters_table(_plain_app(database_url, None).dead_letters(function=function, limit=limit)))


@dlq.command("redrive")
@click.argument("run_ids", nargs=-1)
@click.option("--function", default=None, help="redrive every dead letter of this function")
@click.option("--database-url", envvar="STEPWELL_DATABASE_URL", help=_DB_HELP)
def dlq_redrive(run_ids: tuple[str, ...], function: str | None, database_url: str | None) -> None:
    """Re-run dead letters from their failed step (each entry once)."""
    if not run_ids and not function:
        raise click.UsageError("name RUN_IDS or --function")
    redriven = _plain_app(database_url, None).redrive(list(run_ids), function=function)
    console.print(f"redriven {len(redriven)} run(s)")


@main.command()
@click.option("--database-url", envvar="STEPWELL_DATABASE_URL", help=_DB_HELP)
@click.option(
    "--print-sql",
    is_flag=True,
    help="print the schema SQL for the URL's backend instead of applying it (to apply with Alembic, Django, ...)",
)
def migrate(database_url: str | None, print_sql: bool) -> None:
    """Create or upgrade the schema."""
    if print_sql:
        click.echo(migration_sql(database_url), nl=False)
        return
    app = App("stepwell-cli", database_url=database_url, auto_migrate=False)
    applied = app.store.migrate()
    console.print(f"applied migrations {applied}" if applied else "schema is up to date")
