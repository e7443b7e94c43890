"""`stepwell functions ...`: pause and resume a whole function."""

from __future__ import annotations

import click

from stepwell.cli.common import DB_HELP, console, existing_app, main, optional_app
from stepwell.cli.remote import endpoint, remote_options


@main.group()
def functions() -> None:
    """Pause or resume a whole function (every key, every run not yet started).

    \b
    Examples:
      stepwell functions pause send-invoice
      stepwell functions resume send-invoice
    """


_app_option = optional_app("optional: the app that defines FUNCTION (else it is looked up in the registry)")


@functions.command("pause")
@click.argument("function")
@_app_option
@click.option("--database-url", envvar="STEPWELL_DATABASE_URL", help=DB_HELP)
@remote_options
def functions_pause(
    function: str, app_target: str | None, database_url: str | None, server: str | None, token: str | None
) -> None:
    """Stop starting runs of FUNCTION: no worker claims them until it is resumed. Runs in progress
    finish; events still start runs, which wait (`stepwell runs show` says why).

    \b
    Example:
      stepwell functions pause send-invoice
    """
    app = endpoint(server, token, lambda: existing_app(database_url, app_target))
    paused_at = app.pause_function(function)
    console.print(f"{function}: paused since {paused_at.isoformat()}", highlight=False)


@functions.command("resume")
@click.argument("function")
@_app_option
@click.option("--database-url", envvar="STEPWELL_DATABASE_URL", help=DB_HELP)
@remote_options
def functions_resume(
    function: str, app_target: str | None, database_url: str | None, server: str | None, token: str | None
) -> None:
    """Start runs of a paused FUNCTION again, at once (resuming a running function changes nothing).

    \b
    Example:
      stepwell functions resume send-invoice
    """
    app = endpoint(server, token, lambda: existing_app(database_url, app_target))
    app.resume_function(function)
    console.print(f"{function}: resumed", highlight=False)
