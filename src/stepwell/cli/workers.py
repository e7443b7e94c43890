"""`stepwell worker` and `stepwell dev`: run the app's functions until SIGTERM/SIGINT."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

import click

from stepwell.cli.common import DB_HELP, console, load_app, main, setup_logging


def _worker_options(fn: Any) -> Any:
    fn = click.option("--database-url", envvar="STEPWELL_DATABASE_URL", help=DB_HELP)(fn)
    fn = click.option("--concurrency", default=10, show_default=True, help="runs at once in this process")(fn)
    fn = click.option("--lease", default=30.0, show_default=True, help="lease (visibility timeout), seconds")(fn)
    fn = click.option("--poll-interval", default=0.5, show_default=True, help="seconds between polls when idle")(fn)
    fn = click.option("--shutdown-timeout", default=10.0, show_default=True, help="seconds to finish on SIGTERM")(fn)
    fn = click.option("--rescue-interval", default=5.0, show_default=True, help="seconds between lease rescues")(fn)
    return click.option("-v", "--verbose", is_flag=True, help="log every claim and settlement (debug level)")(fn)


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

    setup_logging(verbose)
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
    """Run a worker for the app's functions until SIGTERM/SIGINT.

    \b
    Examples:
      stepwell worker sermons:app --concurrency 20
      stepwell worker sermons:app --processes 4 --database-url postgresql://stepwell@db.internal/stepwell
    """
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
    """All in one process for development: worker and maintenance, SQLite by default.

    \b
    Example:
      stepwell dev sermons:app
    """
    console.print(f"[bold]stepwell dev[/] {app_target} · Ctrl-C to stop")
    _run_worker(app_target, **options)
