"""`stepwell server`: the HTTP API in the foreground, with API keys; and the API that `stepwell dev` embeds."""

from __future__ import annotations

import click

from stepwell.app import App
from stepwell.cli.common import DB_HELP, console, main, plain_app, setup_logging


@main.command()
@click.option(
    "--app",
    "app_target",
    envvar="STEPWELL_APP",
    default=None,
    metavar="MODULE:APP",
    help="the app whose functions events start (default: a bare app on the database)",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", default=8288, show_default=True)
@click.option("--no-auth", is_flag=True, help="serve without API keys (refused unless --host is loopback)")
@click.option("--database-url", envvar="STEPWELL_DATABASE_URL", help=DB_HELP)
@click.option(
    "--no-scheduler",
    is_flag=True,
    help="do not run cron ticks, lease rescue and retention here (another process of this database does)",
)
@click.option("-v", "--verbose", is_flag=True)
def server(
    app_target: str | None,
    host: str,
    port: int,
    no_auth: bool,
    no_scheduler: bool,
    database_url: str | None,
    verbose: bool,
) -> None:
    """Serve the HTTP API (/api/v1) until SIGTERM/SIGINT.

    Events are routed from the function registry in the database, so the server needs no user code.
    Unless --no-scheduler, it also runs the maintenance that keeps time moving without a worker: cron
    ticks of every registered function (exactly once per tick, whatever the number of schedulers),
    lease rescue, run timeouts and retention.

    Example: stepwell server --port 8288 --database-url postgresql://app@db/stepwell"""
    from stepwell.http import serve
    from stepwell.http.server import check_bind

    check_bind(host, not no_auth)
    setup_logging(verbose)
    app = plain_app(database_url, app_target)
    if not no_auth and not any(key.revoked_at is None for key in app.api_keys()):
        console.print("[yellow]no API key yet[/]: create one with `stepwell tokens create NAME --scope ...`")
    console.print(f"[bold]stepwell server[/] http://{host}:{port}/api/v1 · keys {'off' if no_auth else 'required'}")
    console.print(f"dashboard on http://{host}:{port}/ (log in with an API key{'' if not no_auth else ': not needed'})")
    if no_scheduler:
        serve(app, host=host, port=port, auth=not no_auth, log_level="debug" if verbose else "warning")
        return
    from stepwell.http import ServerThread
    from stepwell.observe import gauges

    def served() -> list[str]:
        return [function.name for function in app.functions() if function.retired_at is None]

    gauges.QueueSampler(lambda: app.store, served).start()  # one process samples: the scheduler's
    with ServerThread(app, host=host, port=port, auth=not no_auth):
        app.run_scheduler()  # in this thread until SIGTERM/SIGINT; the API stops with it


def serve_dev_api(app: App, port: int) -> None:
    """`stepwell dev`: the API on 127.0.0.1:`port`, on a thread beside the worker, without keys (loopback only)."""
    from stepwell.http import ServerThread

    try:
        started = ServerThread(app, host="127.0.0.1", port=port, auth=False).start()
    except OSError as err:
        raise click.ClickException(f"cannot serve the API on 127.0.0.1:{port} ({err}); pass --port, or 0") from None
    console.print(f"API on {started.url}/api/v1 (no keys: loopback only)")
    console.print(f"dashboard on {started.url}/")
