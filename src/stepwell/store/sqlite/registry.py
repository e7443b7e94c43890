"""The function registry on SQLite: register an app's functions, list them, check the generation, pause them.

Functions over the store's connections. BEGIN IMMEDIATE already serialises every writer of the
file, so a registration and an ingest never interleave: the generation an ingest reads inside its
write transaction is the one its commit lands on.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import orjson

from stepwell.errors import RegistryChanged
from stepwell.model.definition import FunctionDefinition
from stepwell.store.base import RegisteredFunction, RegistryChange, RegistryListing
from stepwell.store.registration import plan_registration
from stepwell.store.sqlfile import load_queries
from stepwell.store.sqlite.times import moment, moment_or_none

R = load_queries("stepwell.store.sqlite", "registry.sql")


class RegistryVerbs:
    """register_functions, list_functions, set_function_paused (see Store)."""

    if TYPE_CHECKING:

        def _write(self, operation: str) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...
        def _read(self, operation: str) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...
        def _now(self, now: datetime | None) -> int: ...

    def register_functions(
        self, app: str, definitions: Sequence[FunctionDefinition], *, now: datetime | None = None
    ) -> RegistryChange:
        with self._write("register_functions") as conn:
            return register(conn, app, definitions, self._now(now))

    def list_functions(self) -> RegistryListing:
        with self._read("list_functions") as conn:
            return listing(conn)

    def set_function_paused(self, function: str, paused: bool, *, now: datetime | None = None) -> datetime | None:
        at = self._now(now)
        with self._write("set_function_paused") as conn:
            return set_paused(conn, function, paused, at)


def register(conn: sqlite3.Connection, app: str, definitions: Sequence[FunctionDefinition], at: int) -> RegistryChange:
    """Inside the caller's write transaction: plan against the rows that matter, write the plan."""
    names = orjson.dumps([d.name for d in definitions]).decode()
    rows = [_row(r) for r in conn.execute(R["register_functions_rows"], {"app": app, "names": names})]
    plan = plan_registration(app, definitions, rows, generation(conn))
    for owner, name in plan.retire:
        conn.execute(R["register_functions_retire"], {"app": owner, "name": name, "now": at})
    for upsert in plan.upserts:
        params = {"app": app, "name": upsert.name, "version": upsert.version, "definition": upsert.definition}
        conn.execute(R["register_functions_upsert"], {**params, "now": at})
    for entry in plan.log:
        conn.execute(R["register_functions_log"], {
            "now": at, "app": entry.app, "name": entry.name, "change": entry.change,
            "old_version": entry.old_version, "new_version": entry.new_version,
        })  # fmt: skip
    if plan.log:
        conn.execute(R["register_functions_bump"], {"generation": plan.change.generation})
    return plan.change


def listing(conn: sqlite3.Connection) -> RegistryListing:
    """One read transaction, so that the rows and the generation belong together."""
    conn.execute("BEGIN")
    try:
        rows = tuple(_row(r) for r in conn.execute(R["list_functions"]))
        return RegistryListing(generation(conn), rows)
    finally:
        conn.execute("COMMIT")


def set_paused(conn: sqlite3.Connection, function: str, paused: bool, at: int) -> datetime | None:
    """Inside the caller's write transaction: the pause row written (its first time kept) or deleted."""
    if not paused:
        conn.execute(R["set_function_paused_resume"], {"function": function})
        return None
    conn.execute(R["set_function_paused_pause"], {"function": function, "now": at})
    [paused_at] = conn.execute(R["set_function_paused_at"], {"function": function}).fetchone()
    return moment(paused_at)


def check_generation(conn: sqlite3.Connection, expected: int | None) -> None:
    """Raise RegistryChanged (the caller's transaction then rolls back) unless the registry is at `expected`."""
    if expected is not None and (current := generation(conn)) != expected:
        raise RegistryChanged(current)


def generation(conn: sqlite3.Connection) -> int:
    (value,) = conn.execute(R["register_functions_generation"]).fetchone() or (0,)
    return int(value)


def _row(row: tuple[object, ...]) -> RegisteredFunction:
    app, name, version, definition, registered_at, updated_at, retired_at, *paused_at = row
    assert isinstance(definition, bytes)
    return RegisteredFunction(
        app=str(app),
        name=str(name),
        version=str(version),
        definition=definition,
        registered_at=moment(registered_at),  # type: ignore[arg-type]
        updated_at=moment(updated_at),  # type: ignore[arg-type]
        retired_at=moment_or_none(retired_at),  # type: ignore[arg-type]
        paused_at=moment_or_none(paused_at[0]) if paused_at else None,  # type: ignore[arg-type]
    )
