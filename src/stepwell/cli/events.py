"""`stepwell send`: send one event from the shell."""

from __future__ import annotations

import click
import orjson

from stepwell.cli.common import DB_HELP, console, main, plain_app
from stepwell.cli.remote import endpoint, remote_options


@main.command()
@click.argument("name")
@click.argument("data", default="{}")
@click.option(
    "--app",
    "app_target",
    envvar="STEPWELL_APP",
    default=None,
    metavar="MODULE:APP",
    help="optional: an app to register before sending (events are routed from the database's registry)",
)
@click.option("--id", "event_id", default=None, help="idempotency id: a repeat is accepted and ignored")
@click.option("--database-url", envvar="STEPWELL_DATABASE_URL", help=DB_HELP)
@remote_options
def send(
    name: str,
    data: str,
    app_target: str | None,
    event_id: str | None,
    database_url: str | None,
    server: str | None,
    token: str | None,
) -> None:
    """Send event NAME with JSON DATA; prints the event id and the runs it started.

    The runs are decided from the function registry in the database (what every worker and
    `stepwell dev` registered at start), so no user code is needed here."""
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError as err:
        raise click.BadParameter(f"DATA is not valid JSON: {err}") from None
    app = endpoint(server, token, lambda: plain_app(database_url, app_target))
    event_id = app.send(name, payload, id=event_id)
    record = app.event(event_id)
    console.print(f"event {event_id}: {record.disposition.value}, runs: {', '.join(record.run_ids) or 'none'}")
