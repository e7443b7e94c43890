"""What every command shares: the database option, loading the user's app, the console, logging, errors."""

from __future__ import annotations

import importlib
import logging
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from stepwell.app import App
from stepwell.config import resolve_database_url
from stepwell.errors import DatabaseNotFound, EventNotFound, RunNotFound, StepwellError, StoreError
from stepwell.observe.logs import configure_logging
from stepwell.render import make_console

console = make_console()
errors = make_console(stderr=True)
DB_HELP = (
    "the database: sqlite:///path.db or postgresql://user@host/db "
    "[default: $STEPWELL_DATABASE_URL, else ./.stepwell/stepwell.db]"
)
APP_HELP = "the App to load, as module:attribute (the current folder is importable) [env: STEPWELL_APP]"
_DATABASE_KEY = "stepwell.database"
_Command = TypeVar("_Command", bound=Callable[..., Any])


def optional_app(help_text: str) -> Callable[[_Command], _Command]:
    """The `--app MODULE:APP` option of commands that work without one (from the registry); `help_text`
    says what it adds for that command."""
    return click.option(
        "--app", "app_target", envvar="STEPWELL_APP", default=None, metavar="MODULE:APP", help=help_text
    )


def load_app(target: str, database_url: str | None = None) -> App:
    """Import `module:attribute` (the current folder is importable) and return the App found there.

    Every way this goes wrong is one line naming the module, the file and line, or the attribute.
    """
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise click.BadParameter(f"{target!r} must look like module:app, e.g. sermons:app or examples.sermons:app")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module = _import(module_name)
    if not hasattr(module, attribute):
        apps = sorted(name for name, value in vars(module).items() if isinstance(value, App))
        found = f"; the App(s) there: {', '.join(apps)}" if apps else "; it defines no stepwell.App"
        raise click.BadParameter(f"module {module_name!r} has no attribute {attribute!r}{found}")
    app = getattr(module, attribute)
    if not isinstance(app, App):
        raise click.BadParameter(f"{target!r} is a {type(app).__name__}, not a stepwell.App")
    if database_url:
        app.use_database(database_url)
    _remember_database(app)
    return app


def _import(module_name: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and module_name.split(".")[0] == err.name.split(".")[0]:
            raise click.BadParameter(
                f"no module {module_name!r} in {os.getcwd()} (run from the folder that holds it, or name it by its "
                "dotted path)"
            ) from None
        raise click.BadParameter(f"importing {module_name!r} failed: {err}") from None
    except SyntaxError as err:
        where = f"{err.filename}, line {err.lineno}"
        text = f": {err.text.strip()}" if err.text else ""
        raise click.BadParameter(f"{module_name!r} has a syntax error ({where}): {err.msg}{text}") from None
    except Exception as err:  # noqa: BLE001 - any error in the user's module becomes one line, not a traceback
        frame = traceback.extract_tb(err.__traceback__)[-1]
        raise click.BadParameter(
            f"importing {module_name!r} raised {type(err).__name__}: {err} ({Path(frame.filename).name}, "
            f"line {frame.lineno})"
        ) from None


def plain_app(database_url: str | None, target: str | None = None) -> App:
    """The app named by `target`, or a bare one on the database (created or upgraded on first use):
    for commands that write, whose routing comes from the registry in the database."""
    app = load_app(target, database_url) if target else App("stepwell-cli", database_url=database_url)
    _remember_database(app)
    return app


def existing_app(database_url: str | None, target: str | None = None) -> App:
    """The app on a database that must already exist: reading or operating creates no file and no schema."""
    app = (
        load_app(target, database_url) if target else App("stepwell-cli", database_url=database_url, auto_migrate=False)
    )
    _remember_database(app)
    app.require_schema()
    return app


def _remember_database(app: App) -> None:
    """Kept for error messages: an error about the store names the database it came from."""
    context = click.get_current_context(silent=True)
    if context is not None:
        context.meta[_DATABASE_KEY] = app.database


def database_words(database_url: str | None) -> str:
    return resolve_database_url(database_url).describe()


def warn(message: str) -> None:
    """A warning: on stderr, the exit status stays 0."""
    errors.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)


def setup_logging(verbose: bool) -> None:
    """Rich on a terminal, JSON lines otherwise (see stepwell.observe.logs); a worker logs the pool's
    connection failures (one-shot commands keep them quiet and report the cause once)."""
    logging.getLogger("psycopg.pool").propagate = True
    configure_logging("auto", verbose=verbose)


def _quiet_driver_logs() -> None:
    """One-shot commands report a connection failure once, in their error; the pool's retries stay quiet."""
    pool_log = logging.getLogger("psycopg.pool")
    pool_log.addHandler(logging.NullHandler())
    pool_log.propagate = False


class Group(click.Group):
    """Turns a StepwellError into a one-line CLI error (exit status 1) instead of a traceback.

    An error about the store or a missing run names the database it came from: with a relative
    default path, "no run X" in the wrong folder is otherwise a mystery."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except StepwellError as err:
            message = str(err)
            database = ctx.meta.get(_DATABASE_KEY)
            if (
                isinstance(err, StoreError | RunNotFound | EventNotFound)
                and not isinstance(err, DatabaseNotFound)
                and database
            ):
                message += f" (database: {database})"
            raise click.ClickException(message) from None


_quiet_driver_logs()


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="stepwell")
def main() -> None:
    """Stepwell: durable, event-driven background jobs and workflows.

    \b
    Examples:
      stepwell dev sermons:app
      stepwell send --app sermons:app transcription.requested '{"sermon_id": 7}'
      stepwell runs ls --status failed
    """
