"""Settings of the PostgreSQL store: keyword arguments, or `stepwell_*` query parameters of the URL.

The URL is the one setting every entry point already carries (`App(database_url=)`, the CLI's
`--database-url`, `STEPWELL_DATABASE_URL`), so the store reads its own knobs from it and hands
libpq the URL without them (libpq refuses parameters it does not know).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import timedelta
from typing import Any
from urllib.parse import unquote_plus, urlsplit, urlunsplit

from psycopg.conninfo import conninfo_to_dict

from stepwell.errors import ConfigurationError
from stepwell.model.durations import parse_duration

_PREFIX = "stepwell_"
_OFF = ("off", "false", "no", "0")
_ON = ("on", "true", "yes", "1")


@dataclass(frozen=True, slots=True)
class PostgresOptions:
    """How the store uses PostgreSQL. Every field can also be set as `?stepwell_<field>=` on the URL."""

    pool_max: int = 4  # connections per store (per process); LISTEN uses one more while a worker runs
    pool_timeout: float = 5.0  # seconds to wait for a free pooled connection before StoreUnavailable
    statement_timeout: timedelta | None = timedelta(seconds=30)  # None: keep the server/role setting
    idle_in_transaction_timeout: timedelta | None = timedelta(seconds=60)  # None: keep the server/role setting
    listen: bool = True  # False for PgBouncer in transaction mode: workers then only poll
    prepare: bool = True  # False for PgBouncer in transaction mode older than 1.21

    def __post_init__(self) -> None:
        if not isinstance(self.pool_max, int) or self.pool_max < 1:
            raise ConfigurationError(f"stepwell_pool_max: {self.pool_max!r} must be an int >= 1")
        if self.pool_timeout <= 0:
            raise ConfigurationError(f"stepwell_pool_timeout: {self.pool_timeout!r} must be a positive duration")


def split_url(url: str, base: PostgresOptions | None = None) -> tuple[str, PostgresOptions]:
    """(the URL for libpq, the options): `stepwell_*` query parameters override `base`."""
    parts = urlsplit(url)
    kept, changes = [], {}
    known = {f.name for f in fields(PostgresOptions)}
    for item in parts.query.split("&") if parts.query else []:
        key, _, raw = item.partition("=")
        if not key.startswith(_PREFIX):
            kept.append(item)
            continue
        name = key.removeprefix(_PREFIX)
        if name not in known:
            accepted = ", ".join(_PREFIX + k for k in sorted(known))
            raise ConfigurationError(f"database URL parameter {key!r} is unknown; accepted: {accepted}")
        changes[name] = _value(name, unquote_plus(raw))
    options = replace(base or PostgresOptions(), **changes)
    return urlunsplit(parts._replace(query="&".join(kept))), options


def _value(name: str, text: str) -> Any:
    option = _PREFIX + name
    if name in ("listen", "prepare"):
        if text.lower() in _ON:
            return True
        if text.lower() in _OFF:
            return False
        raise ConfigurationError(f"{option}: {text!r} must be on or off")
    if name == "pool_max":
        if not text.isdigit():
            raise ConfigurationError(f"{option}: {text!r} must be a whole number >= 1")
        return int(text)
    if name in ("statement_timeout", "idle_in_transaction_timeout") and text.lower() == "off":
        return None
    duration = parse_duration(float(text) if _is_number(text) else text, option=option)  # bare numbers: seconds
    return duration.total_seconds() if name == "pool_timeout" else duration


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def connection_kwargs(conninfo: str, options: PostgresOptions) -> dict[str, Any]:
    """Keyword arguments for every pooled connection; the URL's own settings win."""
    given = conninfo_to_dict(conninfo)
    kwargs: dict[str, Any] = {"autocommit": True}  # a one-statement verb is one round trip
    if not options.prepare:
        kwargs["prepare_threshold"] = None
    if "application_name" not in given:
        kwargs["application_name"] = "stepwell"
    if "connect_timeout" not in given:
        kwargs["connect_timeout"] = 10
    return kwargs


def listener_kwargs(conninfo: str, options: PostgresOptions) -> dict[str, Any]:
    """The LISTEN connection also sends TCP keepalives, so a silently dead peer is noticed."""
    given = conninfo_to_dict(conninfo)
    kwargs = connection_kwargs(conninfo, options)
    kwargs["prepare_threshold"] = None
    for key, value in (
        ("keepalives", 1),
        ("keepalives_idle", 30),
        ("keepalives_interval", 10),
        ("keepalives_count", 3),
    ):
        if key not in given:
            kwargs[key] = value
    return kwargs


def session_settings(options: PostgresOptions) -> dict[str, str | None]:
    """Parameters of the `configure_session` query, in milliseconds as PostgreSQL takes them."""
    return {
        "statement_timeout": _millis(options.statement_timeout),
        "idle_timeout": _millis(options.idle_in_transaction_timeout),
    }


def _millis(value: timedelta | None) -> str | None:
    return None if value is None else str(int(value.total_seconds() * 1000))
