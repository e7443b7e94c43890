"""`stepwell worker` and `stepwell dev`: run the app's functions until SIGTERM/SIGINT."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

import click

from stepwell.cli.common import DB_HELP, console, load_app, main
from stepwell.cli.server import PUSH_LEASE, PUSH_LEASE_HELP, serve_dev_api
from stepwell.observe.logs import configure_logging


def _worker_options(fn: Any) -> Any:
    fn = click.option("--database-url", envvar="STEPWELL_DATABASE_URL", help=DB_HELP)(fn)
    fn = click.option(
        "--concurrency", default=10, show_default=True, type=click.IntRange(min=1), help="runs at once in this process"
    )(fn)
    fn = click.option(
        "--prefetch", type=click.IntRange(min=0), help="runs claimed ahead of free slots  [default: the claim batch]"
    )(fn)
    fn = click.option(
        "--claim-batch", default=100, show_default=True, type=click.IntRange(min=1), help="most runs per claim"
    )(fn)
    fn = click.option(
        "--linger",
        default=0.002,
        show_default=True,
        type=click.FloatRange(min=0),
        help="seconds an outcome may wait for others to share a settle",
    )(fn)
    fn = click.option(
        "--lease",
        default=30.0,
        show_default=True,
        type=click.FloatRange(min=1),
        help="lease (visibility timeout), seconds",
    )(fn)
    fn = click.option(
        "--poll-interval",
        default=0.5,
        show_default=True,
        type=click.FloatRange(min=0, min_open=True),
        help="seconds between polls when idle",
    )(fn)
    fn = click.option(
        "--shutdown-timeout",
        default=10.0,
        show_default=True,
        type=click.FloatRange(min=0),
        help="seconds to finish on SIGTERM",
    )(fn)
    fn = click.option("--rescue-interval", default=5.0, show_default=True, help="seconds between lease rescues")(fn)
    fn = click.option(
        "--metrics-port", type=int, default=None, help="serve Prometheus /metrics on 127.0.0.1:PORT, with queue gauges"
    )(fn)
    fn = click.option(
        "--log-format", type=click.Choice(["auto", "json", "rich"]), default="auto", show_default=True,
        help="auto: rich on a terminal, JSON lines otherwise",
    )(fn)  # fmt: skip
    return click.option(
        "-v", "--verbose", is_flag=True, help="log every run's start and completion, and debug details"
    )(fn)


def _run_worker(
    app_target: str,
    database_url: str | None,
    concurrency: int,
    lease: float,
    poll_interval: float,
    shutdown_timeout: float,
    rescue_interval: float,
    verbose: bool,
    prefetch: int | None = None,
    claim_batch: int = 100,
    linger: float = 0.002,
    api_port: int = 0,
    metrics_port: int | None = None,
    log_format: str = "auto",
    dev: bool = False,
) -> None:
    from datetime import timedelta

    from stepwell.cli.observe import banner
    from stepwell.observe import gauges, metrics

    configure_logging(log_format, verbose=verbose, runs_debug=dev)  # type: ignore[arg-type]
    app = load_app(app_target, database_url)
    if dev:
        console.print(banner(app, database_url))
    if metrics_port is not None:
        metrics.serve(metrics_port)
        gauges.QueueSampler(lambda: app.store, app.registry.names).start()
        console.print(f"metrics: http://127.0.0.1:{metrics_port}/metrics")
    if api_port:
        serve_dev_api(app, api_port)
    app.run_worker(
        concurrency=concurrency,
        prefetch=prefetch,
        claim_batch=claim_batch,
        linger=linger,
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
        if value is None or value is False:  # not `in (None, False)`: 0 == False, and --prefetch 0 counts
            continue
        flag = "--" + key.replace("_", "-")
        argv += [flag] if value is True else [flag, str(value)]
    port = options.get("metrics_port")
    children = []
    for number in range(processes):
        own = list(argv)
        if port is not None:  # one port per process: 9100, 9101, ...
            own[own.index("--metrics-port") + 1] = str(port + number)
        children.append(subprocess.Popen(own))

    def forward(signum: int, _frame: Any) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [child.wait() for child in children]
    sys.exit(max(codes))


@main.command()
@click.argument("app_target", metavar="[MODULE:APP]", required=False)
@_worker_options
@click.option("--port", default=8288, show_default=True, help="serve the HTTP API on 127.0.0.1:PORT; 0: do not")
@click.option(
    "--push-lease",
    type=click.FloatRange(min=1),
    help=f"push mode (no MODULE:APP) only: {PUSH_LEASE_HELP} (default {PUSH_LEASE:g}; with an app, use --lease)",
)
def dev(app_target: str | None, port: int, push_lease: float | None, **options: Any) -> None:
    """All in one process for development: worker, maintenance and the HTTP API, SQLite by default.

    Prints a banner (the database, the functions and their triggers, the API's URL) and every run's lifecycle.
    Without MODULE:APP (push mode: your web app serves the functions), it serves the API and delivers the
    runs of registered functions to their URLs on loopback, unsigned.

    \b
    Examples:
      stepwell dev sermons:app
      stepwell dev            # push mode: the API and the dispatcher, no worker
      stepwell dev --push-lease 60
    """
    if app_target is None:
        from stepwell.cli.server import dev_push

        configure_logging(options["log_format"], verbose=options["verbose"], runs_debug=True)  # type: ignore[arg-type]
        dev_push(options["database_url"], port, PUSH_LEASE if push_lease is None else push_lease)
        return
    if push_lease is not None:
        raise click.UsageError("--push-lease applies to push mode (stepwell dev without MODULE:APP); use --lease")
    _run_worker(app_target, dev=True, api_port=port, **options)
