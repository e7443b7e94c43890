"""`stepwell migrate`: create or upgrade the schema, or print it for another migration tool."""

from __future__ import annotations

import click

from stepwell.app import App, migration_sql
from stepwell.cli.common import DB_HELP, console, main


@main.command()
@click.option("--database-url", envvar="STEPWELL_DATABASE_URL", help=DB_HELP)
@click.option(
    "--print-sql",
    is_flag=True,
    help="print the schema SQL for the URL's backend instead of applying it (to apply with Alembic, Django, ...)",
)
def migrate(database_url: str | None, print_sql: bool) -> None:
    """Create or upgrade the schema (workers and `send` do it by themselves).

    \b
    Examples:
      stepwell migrate --database-url postgresql://stepwell@db.internal/stepwell
      stepwell migrate --print-sql --database-url postgresql://localhost/app > 0001_stepwell.sql
    """
    if print_sql:
        click.echo(migration_sql(database_url), nl=False)
        return
    app = App("stepwell-cli", database_url=database_url, auto_migrate=False)
    applied = app.store.migrate()
    message = f"applied migrations {applied}" if applied else "schema is up to date"
    console.print(f"{message} in {app.database}", highlight=False, soft_wrap=True)
