"""`stepwell send`: send one event from the shell."""

from __future__ import annotations

import json

import click
import orjson

from stepwell.app import App
from stepwell.cli.common import DB_HELP, console, main, optional_app, plain_app, warn
from stepwell.cli.remote import endpoint, remote_options
from stepwell.model.records import Disposition


@main.command()
@click.argument("name")
@click.argument("data", default="{}")
@optional_app("optional: an app to register before sending (events are routed from the database's registry)")
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
    """Send event NAME with DATA, a JSON object (default {}); prints the event id, its disposition and runs.

    The runs are decided from the function registry in the database (what every worker and
    `stepwell dev` registered at start), so no user code is needed here. DATA that is not a JSON
    object is an error and nothing is sent. An event that no registered function listens to is
    stored (disposition no_match) with a warning.

    \b
    Example:
      stepwell send transcription.requested '{"sermon_id": 7, "url": "https://example.org/7.mp3"}'
    """
    payload = parse_data(data)
    app = endpoint(server, token, lambda: plain_app(database_url, app_target))
    event_id = app.send(name, payload, id=event_id)
    record = app.event(event_id)
    console.print(
        f"event {event_id}: {record.disposition.value}, runs: {', '.join(record.run_ids) or 'none'}", highlight=False
    )
    if record.disposition == Disposition.NO_MATCH:
        warn(f"no registered function listens to {name!r} ({_listened(app)}); the event was stored, nothing started")


def _listened(app: object) -> str:
    if not isinstance(app, App):
        return "see GET /api/v1/functions"
    events = sorted({e for f in app.functions() if f.retired_at is None for e in orjson.loads(f.definition)["events"]})
    return f"the registry's functions listen to: {', '.join(events)}" if events else "no function is registered"


def parse_data(data: str) -> dict[str, object]:
    """DATA as the Python API would receive it: a JSON object. orjson reads integers beyond 64 bits
    as floats (2**64 becomes 1.8446744073709552e+19), which `send` in Python refuses; refuse them
    here too, clearly, rather than store a silently rounded number."""
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError as err:
        raise click.BadParameter(
            f"not valid JSON ({err}); write an object like '{{\"id\": 7}}'", param_hint="DATA"
        ) from None
    if not isinstance(payload, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(payload), "a number")
        raise click.BadParameter(
            f"must be a JSON object like '{{\"id\": 7}}', got {kind} ({data.strip()[:40]}); nothing was sent",
            param_hint="DATA",
        )
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
