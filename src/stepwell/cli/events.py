"""`stepwell send`: send one event from the shell."""

from __future__ import annotations

import json

import click
import orjson

from stepwell.cli.common import DB_HELP, console, load_app, main


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
@click.option("--database-url", envvar="STEPWELL_DATABASE_URL", help=DB_HELP)
def send(name: str, data: str, app_target: str, event_id: str | None, database_url: str | None) -> None:
    """Send event NAME with JSON DATA; prints the event id."""
    payload = parse_data(data)
    app = load_app(app_target, database_url)
    event_id = app.send(name, payload, id=event_id)
    record = app.event(event_id)
    console.print(f"event {event_id}: {record.disposition.value}, runs: {', '.join(record.run_ids) or 'none'}")


def parse_data(data: str) -> object:
    """DATA as the Python API would receive it. orjson reads integers beyond 64 bits as floats
    (2**64 becomes 1.8446744073709552e+19), which `send` in Python refuses; refuse them here too,
    clearly, rather than store a silently rounded number."""
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError as err:
        raise click.BadParameter(f"DATA is not valid JSON: {err}") from None
    json.loads(data, parse_int=_int64)  # the exact integers, only to check their range
    return payload


def _int64(text: str) -> int:
    value = int(text)
    if not -(2**63) <= value <= 2**64 - 1:
        raise click.BadParameter(
            f"DATA has the integer {text[:40]}{'...' if len(text) > 40 else ''}, outside the 64-bit range "
            "(-2**63 to 2**64-1) that Stepwell stores exactly; send it as a string"
        )
    return value
