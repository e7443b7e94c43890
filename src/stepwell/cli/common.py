"""What every command shares: the database option, loading the user's app, the console, logging."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from stepwell.app import App
from stepwell.errors import StepwellError
from stepwell.observe.logs import configure_logging
from stepwell.render import make_console

console = make_console()
DB_HELP = "sqlite:///path.db or postgresql://...; default $STEPWELL_DATABASE_URL, else sqlite .stepwell/stepwell.db"


def load_app(target: str, database_url: str | None = None) -> App:
    """Import `module:attribute` (the current folder is importable) and return the App found there."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise click.BadParameter(f"{target!r} must look like module:app, e.g. examples.sermons:app")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise click.BadParameter(f"cannot import {module_name!r}: {err}") from None
    app = getattr(module, attribute, None)
    if not isinstance(app, App):
        raise click.BadParameter(f"{target!r} is not a stepwell.App (found {type(app).__name__})")
    if database_url:
        app.use_database(database_url)
    return app


def plain_app(database_url: str | None, target: str | None) -> App:
    """The app named by `target`, or a bare one on the database: read commands need no user code."""

    return load_app(target, database_url) if target else App("stepwell-cli", database_url=database_url)


def setup_logging(verbose: bool) -> None:
    """Rich on a terminal, JSON lines otherwise (see stepwell.observe.logs)."""
    configure_logging("auto", verbose=verbose)


class Group(click.Group):
    """Turns a StepwellError into a one-line CLI error instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except StepwellError as err:
            raise click.ClickException(str(err)) from None


@click.group(cls=Group)
@click.version_option(package_name="stepwell")
def main() -> None:
    """Stepwell: durable, event-driven background jobs and workflows."""
