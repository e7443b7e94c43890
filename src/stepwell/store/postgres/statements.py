"""Running the named statements of queries.sql, flow.sql and waiting.sql, and translating driver errors (once, here)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from stepwell.errors import StoreError, StoreFull, StoreUnavailable
from stepwell.store.sqlfile import load_queries

Q = load_queries("stepwell.store.postgres")
for _rules in ("flow.sql", "waiting.sql"):  # the machinery several verbs run, one namespace with Q
    _more = load_queries("stepwell.store.postgres", _rules)
    if Q.keys() & _more.keys():
        raise RuntimeError(f"statements named in both queries.sql and {_rules}: {sorted(Q.keys() & _more.keys())}")
    Q.update(_more)
Connection = psycopg.Connection[Any]
Cursor = psycopg.Cursor[tuple[Any, ...]]
FOREVER = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)  # "until woken", as the SQL writes it


@contextlib.contextmanager
def translate(operation: str) -> Iterator[None]:
    """Outages (retriable: nothing was changed) vs. a full disk vs. everything else."""
    try:
        yield
    except psycopg.errors.DiskFull as err:
        raise StoreFull(f"{operation}: the database is out of space ({err}); nothing was stored") from err
    except (psycopg.OperationalError, psycopg.InterfaceError) as err:
        raise StoreUnavailable(f"{operation}: the database is unavailable ({err}); nothing was stored") from err
    except psycopg.Error as err:
        raise StoreError(f"{operation}: {err}") from err


def run(conn: Connection, name: str, params: dict[str, Any]) -> Cursor:
    """Execute the named statement; rows are tuples whatever row factory the connection has (a caller's)."""
    return conn.cursor(row_factory=tuple_row).execute(Q[name], params)


def one(conn: Connection, name: str, params: dict[str, Any]) -> tuple[Any, ...]:
    row = run(conn, name, params).fetchone()
    if row is None:
        raise StoreError(f"{name}: returned no row")
    return row


def same(value: Any) -> Any:
    """Times come back from psycopg as aware datetimes already: the identity conversion."""
    return value
