"""`stepwell server`: the HTTP API in the foreground, with API keys; and the API that `stepwell dev` embeds."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import click

from stepwell.app import App
from stepwell.cli.common import DB_HELP, console, main, optional_app, plain_app, setup_logging
from stepwell.errors import StepwellError

if TYPE_CHECKING:
    from stepwell.push.dispatcher import PushOptions

PUSH_LEASE = 30.0
PUSH_LEASE_HELP = (
    "seconds a pushed run's lease lasts, renewed every third of it while its request is in flight; "
    "runs of a dispatcher that dies are pushed again after it"
)


@main.command()
@optional_app("the app whose functions events start (default: a bare app on the database)")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", default=8288, show_default=True, help="port to listen on")
@click.option("--no-auth", is_flag=True, help="serve without API keys (refused unless --host is loopback)")
@click.option("--database-url", envvar="STEPWELL_DATABASE_URL", help=DB_HELP)
@click.option(
    "--no-scheduler",
    is_flag=True,
    help="do not run cron ticks, lease rescue and retention here (another process of this database does)",
)
@click.option(
    "--signing-key",
    envvar="STEPWELL_SIGNING_KEY",
    default=None,
    help="key(s) that sign push requests (comma-separated while rotating; prefer the environment variable: a "
    "value on the command line shows in `ps`); without one, no push dispatcher",
)
@click.option("--no-push", is_flag=True, help="do not deliver runs of pushed functions (another server does)")
@click.option(
    "--push-allow-private", is_flag=True, help="allow push endpoints on private, link-local and loopback addresses"
)
@click.option("--push-per-endpoint", default=16, show_default=True, help="push requests in flight per endpoint")
@click.option("--push-timeout", default=30.0, show_default=True, help="seconds one push request may take")
@click.option("--push-lease", default=30.0, show_default=True, type=click.FloatRange(min=1), help=PUSH_LEASE_HELP)
@click.option("-v", "--verbose", is_flag=True, help="log every request and debug details")
def server(
    app_target: str | None,
    host: str,
    port: int,
    no_auth: bool,
    no_scheduler: bool,
    database_url: str | None,
    signing_key: str | None,
    no_push: bool,
    push_allow_private: bool,
    push_per_endpoint: int,
    push_timeout: float,
    push_lease: float,
    verbose: bool,
) -> None:
    """Serve the HTTP API (/api/v1) until SIGTERM/SIGINT.

    Events are routed from the function registry in the database, so the server needs no user code.
    Unless --no-scheduler, it also runs the maintenance that keeps time moving without a worker: cron
    ticks of every registered function (exactly once per tick, whatever the number of schedulers),
    lease rescue, run timeouts and retention. Unless --no-push, and given a signing key, it delivers the
    runs of functions registered with a URL (push mode) to that URL.

    \b
    Examples:
      stepwell server --port 8288 --database-url postgresql://app@db/stepwell
      stepwell server --push-lease 60 --push-timeout 45   # pushed runs held 60 s between renewals
    """
    from stepwell.http import serve
    from stepwell.http.server import check_bind

    check_bind(host, not no_auth)
    setup_logging(verbose)
    app = plain_app(database_url, app_target)
    if not no_auth and not any(key.revoked_at is None for key in app.api_keys()):
        console.print("[yellow]no API key yet[/]: create one with `stepwell tokens create NAME --scope ...`")
    console.print(f"[bold]stepwell server[/] http://{host}:{port}/api/v1 · keys {'off' if no_auth else 'required'}")
    push = None
    if not no_push:
        push = push_options(signing_key, dev=no_auth, allow_private=push_allow_private,
                            per_endpoint=push_per_endpoint, timeout=push_timeout, lease=push_lease)  # fmt: skip
    console.print(f"dashboard on http://{host}:{port}/ (log in with an API key{'' if not no_auth else ': not needed'})")
    if no_scheduler and push is None:
        serve(app, host=host, port=port, auth=not no_auth, log_level="debug" if verbose else "warning")
        return
    from stepwell.http import ServerThread
    from stepwell.observe import gauges

    def served() -> list[str]:
        return [function.name for function in app.functions() if function.retired_at is None]

    gauges.QueueSampler(lambda: app.store, served).start()  # one process samples: the scheduler's
    with ServerThread(app, host=host, port=port, auth=not no_auth):
        app.run_scheduler(push=push, maintenance=not no_scheduler)  # until SIGTERM/SIGINT; the API stops with it


def push_options(
    signing_key: str | None,
    *,
    dev: bool,
    allow_private: bool = False,
    per_endpoint: int = 16,
    timeout: float = 30.0,
    lease: float = PUSH_LEASE,
) -> PushOptions | None:
    """The dispatcher's options; None (with a note) when there is no key outside development: it fails closed."""
    from stepwell.push.dispatcher import PushOptions
    from stepwell.push.signing import parse_keys

    try:
        keys = parse_keys(signing_key)
    except StepwellError as err:
        raise click.BadParameter(str(err), param_hint="--signing-key") from None
    if not keys and not dev:
        console.print("[yellow]push dispatcher off[/]: no signing key (--signing-key or STEPWELL_SIGNING_KEY)")
        return None
    mode = "signed" if keys else "unsigned, loopback endpoints only"
    console.print(f"push dispatcher on ({mode})")
    return PushOptions(
        signing_keys=keys,
        dev=dev and not keys,
        allow_loopback=dev or allow_private,  # the private network, this host included
        allow_private=allow_private,
        per_endpoint=per_endpoint,
        request_timeout=timeout,
        lease=timedelta(seconds=lease),
    )


def serve_dev_api(app: App, port: int) -> None:
    """`stepwell dev`: the API on 127.0.0.1:`port`, on a thread beside the worker, without keys (loopback only)."""
    from stepwell.http import ServerThread

    try:
        started = ServerThread(app, host="127.0.0.1", port=port, auth=False).start()
    except OSError as err:
        raise click.ClickException(f"cannot serve the API on 127.0.0.1:{port} ({err}); pass --port, or 0") from None
    console.print(f"API on {started.url}/api/v1 (no keys: loopback only)")
    console.print(f"dashboard on {started.url}/")


def dev_push(database_url: str | None, port: int, lease: float = PUSH_LEASE) -> None:
    """`stepwell dev` without an app: the API without keys, maintenance, and an unsigned loopback-only dispatcher."""
    app = plain_app(database_url, None)
    if port:
        serve_dev_api(app, port)
    app.run_scheduler(push=push_options(None, dev=True, lease=lease))
