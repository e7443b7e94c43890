"""`stepwell tokens ...`: create, list and revoke API keys of the HTTP API (`keys` is ordering keys)."""

from __future__ import annotations

import click
from rich.table import Table

from stepwell.cli.common import DB_HELP, console, existing_app, main, plain_app
from stepwell.model.apikeys import Scope


@main.group()
def tokens() -> None:
    """API keys for `stepwell server`: scopes ingest, read, operate (implies read), admin (everything).

    \b
    Examples:
      stepwell tokens create billing --scope ingest
      stepwell tokens ls
    """


@tokens.command("create")
@click.argument("name")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice([scope.value for scope in Scope]),
    help="repeat for several scopes",
)
@click.option("--database-url", envvar="STEPWELL_DATABASE_URL", help=DB_HELP)
def tokens_create(name: str, scopes: tuple[str, ...], database_url: str | None) -> None:
    """Create a key; its token is printed this once (only its hash is stored).

    \b
    Example:
      stepwell tokens create oncall --scope operate
    """
    key, token = plain_app(database_url, None).create_api_key(name, scopes)
    console.print(
        f"key {key.id} ({', '.join(sorted(s.value for s in key.scopes))}) created; its token:", soft_wrap=True
    )
    click.echo(token)


@tokens.command("ls")
@click.option("--database-url", envvar="STEPWELL_DATABASE_URL", help=DB_HELP)
def tokens_ls(database_url: str | None) -> None:
    """List keys (never their tokens).

    \b
    Example:
      stepwell tokens ls
    """
    found = existing_app(database_url).api_keys()
    table = Table(title=f"{len(found)} API key(s)")
    for column in ("id", "name", "scopes", "created", "revoked"):
        table.add_column(column, overflow="fold")
    for key in found:
        revoked = key.revoked_at.isoformat(timespec="seconds") if key.revoked_at else ""
        scopes = ", ".join(sorted(s.value for s in key.scopes))
        table.add_row(key.id, key.name, scopes, key.created_at.isoformat(timespec="seconds"), revoked)
    console.print(table)


@tokens.command("revoke")
@click.argument("key_id")
@click.option("--database-url", envvar="STEPWELL_DATABASE_URL", help=DB_HELP)
def tokens_revoke(key_id: str, database_url: str | None) -> None:
    """Revoke a key for good: requests with its token are refused from now on.

    \b
    Example:
      stepwell tokens revoke 3f9a0c1d2b4e5f60
    """
    if not existing_app(database_url).revoke_api_key(key_id):
        raise click.ClickException(f"no key {key_id!r} to revoke (unknown, or revoked already)")
    console.print(f"key {key_id} revoked")
