"""Transactional enqueue: find the psycopg connection inside what the caller handed us.

Stepwell writes its event and runs on the caller's connection, inside the caller's open
transaction, and never commits: a rollback leaves nothing behind, and the NOTIFY that wakes the
workers is delivered at the caller's commit. SQLAlchemy is duck-typed, so it is not a dependency.
"""

from __future__ import annotations

from typing import Any

import psycopg

from stepwell.errors import ConfigurationError

_EXPECTED = (
    "a psycopg 3 Connection, or a SQLAlchemy Connection or Session on the postgresql+psycopg driver, "
    "connected to the same database (and search_path) as the Stepwell store"
)


def caller_connection(connection: object) -> psycopg.Connection[Any]:
    """The DBAPI psycopg connection behind `connection`; ConfigurationError says what is accepted."""
    if isinstance(connection, psycopg.Connection):
        return connection
    if isinstance(connection, psycopg.AsyncConnection):
        raise ConfigurationError(
            f"connection: an AsyncConnection cannot be used by the (synchronous) store; pass {_EXPECTED}"
        )
    sqlalchemy_connection = _sqlalchemy_connection(connection)
    if sqlalchemy_connection is not None:
        # Like any SQLAlchemy execute: join the caller's transaction, or begin the one they will commit.
        if not sqlalchemy_connection.in_transaction():
            sqlalchemy_connection.begin()
        raw = getattr(sqlalchemy_connection.connection, "driver_connection", None)
        if isinstance(raw, psycopg.Connection):
            return raw
        raise ConfigurationError(
            f"connection: the SQLAlchemy connection uses the driver {type(raw).__name__}; pass {_EXPECTED}"
        )
    raise ConfigurationError(f"connection: got {type(connection).__name__}; pass {_EXPECTED}")


def _sqlalchemy_connection(connection: object) -> Any:
    """A SQLAlchemy Connection as is; a Session's connection (in the Session's transaction); else None."""
    kind = type(connection)
    if not kind.__module__.startswith("sqlalchemy."):
        return None
    if callable(getattr(connection, "get_bind", None)) and callable(getattr(connection, "connection", None)):
        return connection.connection()  # type: ignore[attr-defined]
    if callable(getattr(connection, "in_transaction", None)) and hasattr(connection, "connection"):
        return connection
    return None
