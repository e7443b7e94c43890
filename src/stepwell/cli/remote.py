"""Commands that can work against a remote Stepwell server (`--server URL`, `STEPWELL_SERVER`) with an
API key (`--token`, `STEPWELL_TOKEN`) instead of the database: the Client has the App's method names."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from stepwell.app import App

if TYPE_CHECKING:
    from stepwell.client import Client


def remote_options(fn: Any) -> Any:
    fn = click.option(
        "--token",
        envvar="STEPWELL_TOKEN",
        default=None,
        help="API key for --server (prefer STEPWELL_TOKEN: a value on the command line shows in `ps`)",
    )(fn)
    return click.option(
        "--server",
        envvar="STEPWELL_SERVER",
        default=None,
        metavar="URL",
        help="talk to this Stepwell server (http://host:8288) instead of the database",
    )(fn)


def endpoint(server: str | None, token: str | None, local: Callable[[], App]) -> App | Client:
    """The remote server's client when `server` is given, else the local app."""
    if not server:
        return local()
    from stepwell.client import Client  # httpx only for commands that call a server

    return Client(server, token)
