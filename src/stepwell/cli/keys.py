"""`stepwell keys ...`: operate one ordering key."""

from __future__ import annotations

import click

from stepwell.cli.common import DB_HELP, console, existing_app, main, optional_app
from stepwell.cli.remote import endpoint, remote_options


@main.group()
def keys() -> None:
    """Operate one ordering key: pause, resume, drain, skip a parked dead letter.

    \b
    Example:
      stepwell keys pause sync-ledger acct:7
    """


def _key_command(name: str, doc: str) -> None:
    example = f"\n\n\b\nExample:\n  stepwell keys {name} sync-ledger acct:7"

    @keys.command(name, help=doc + example)
    @click.argument("function")
    @click.argument("key")
    @optional_app("optional: the app that defines FUNCTION (else its definition is read from the registry)")
    @click.option("--database-url", envvar="STEPWELL_DATABASE_URL", help=DB_HELP)
    @remote_options
    def command(
        function: str, key: str, app_target: str | None, database_url: str | None, server: str | None, token: str | None
    ) -> None:
        # without --app the function is looked up in the registry; with --server the server does it
        app = endpoint(server, token, lambda: existing_app(database_url, app_target))
        result = {"pause": app.pause_key, "resume": app.resume_key, "drain": app.drain_key, "skip": app.skip_key}[name](
            function, key
        )
        detail = {
            "drain": lambda r: f"cancelled {len(r)} run(s)",
            "skip": lambda r: "not parked" if r is None else f"the key moved on to {r or 'no run'}",
        }.get(name, lambda r: "done")(result)
        console.print(f"{function} key {key}: {name} — {detail}")


for _name, _doc in (
    ("pause", "Stop starting runs of the key (a run in progress carries on)."),
    ("resume", "Start runs of the key again."),
    ("drain", "Cancel every run of the key that has not started."),
    ("skip", "Move a parked key past its dead letter."),
):
    _key_command(_name, _doc)
