"""`stepwell send`: send one event from the shell."""

from __future__ import annotations

import click
import orjson

from stepwell.cli.common import APP_HELP, DB_HELP, console, load_app, main, warn
from stepwell.model.records import Disposition


@main.command()
@click.argument("name")
@click.argument("data", default="{}")
@click.option("--app", "app_target", envvar="STEPWELL_APP", required=True, metavar="MODULE:APP", help=APP_HELP)
@click.option("--id", "event_id", default=None, help="idempotency id: a repeat is accepted and ignored")
@click.option("--database-url", envvar="STEPWELL_DATABASE_URL", help=DB_HELP)
def send(name: str, data: str, app_target: str, event_id: str | None, database_url: str | None) -> None:
    """Send event NAME with DATA, a JSON object (default {}); prints the event id, its disposition and runs.

    DATA that is not a JSON object is an error and nothing is sent. An event that no function of
    the app listens to is stored (disposition no_match) with a warning.

    \b
    Example:
      stepwell send --app sermons:app transcription.requested '{"sermon_id": 7, "url": "https://example.org/7.mp3"}'
    """
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
    app = load_app(app_target, database_url)
    event_id = app.send(name, payload, id=event_id)
    record = app.event(event_id)
    console.print(
        f"event {event_id}: {record.disposition.value}, runs: {', '.join(record.run_ids) or 'none'}", highlight=False
    )
    if record.disposition == Disposition.NO_MATCH:
        listened = sorted(app.registry.by_event)
        known = f"it listens to: {', '.join(listened)}" if listened else "it has no event triggers"
        warn(f"no function of app {app.name!r} listens to {name!r} ({known}); the event was stored, nothing started")
