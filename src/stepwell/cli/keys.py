"""`stepwell keys ...`: operate one ordering key."""

from __future__ import annotations

import click

from stepwell.cli.common import DB_HELP, console, main, plain_app


@main.group()
def keys() -> None:
    """Operate one ordering key: pause, resume, drain, skip a parked dead letter."""


def _key_command(name: str, doc: str) -> None:
    @keys.command(name, help=doc)
    @click.argument("function")
    @click.argument("key")
    @click.option("--app", "app_target", envvar="STEPWELL_APP", default=None, metavar="MODULE:APP")
    @click.option("--database-url", envvar="STEPWELL_DATABASE_URL", help=DB_HELP)
    def command(function: str, key: str, app_target: str | None, database_url: str | None) -> None:
        app = plain_app(database_url, app_target)  # the function is looked up in the registry without --app
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
