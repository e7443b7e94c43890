"""The function registry on PostgreSQL: register an app's functions, list them, gate ingest on the generation,
pause them.

Registrations take the registry lock (an advisory lock per schema) exclusively; ingest takes it
shared, for the rest of its transaction, and only then reads the generation (in a later statement,
hence a later snapshot under READ COMMITTED). On our own connections that is the SQL function
`stepwell_registry_check` (migration 0014), called once inside the statement that inserts the
events, so the common send stays one round trip; it raises SW001 when the generation moved.

So an event is either committed before a registration (routed by the old definitions) or checked
after it (and routed again by the new ones): once `register()` returns, no event can start a
function the app no longer has.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
import psycopg
from psycopg.rows import tuple_row

from stepwell.errors import RegistryChanged
from stepwell.model.definition import FunctionDefinition
from stepwell.store.base import RegisteredFunction, RegistryChange, RegistryListing
from stepwell.store.postgres.statements import Connection, Cursor
from stepwell.store.registration import plan_registration
from stepwell.store.sqlfile import load_queries

R = load_queries("stepwell.store.postgres", "registry.sql")
log = logging.getLogger("stepwell.registry")
REGISTRY_CHANGED = "SW001"  # raised by stepwell_registry_check (migration 0014) with the current generation


class RegistryVerbs:
    """register_functions, list_functions, set_function_paused (see Store)."""

    if TYPE_CHECKING:

        def _connection(
            self, operation: str, caller: object | None = None
        ) -> contextlib.AbstractContextManager[Connection]: ...
        def _at(self, now: datetime | None) -> datetime | None: ...

    def register_functions(
        self, app: str, definitions: Sequence[FunctionDefinition], *, now: datetime | None = None
    ) -> RegistryChange:
        with self._connection("register_functions") as conn:
            return register(conn, app, definitions, self._at(now))

    def list_functions(self) -> RegistryListing:
        with self._connection("list_functions") as conn:
            return listing(conn)

    def set_function_paused(self, function: str, paused: bool, *, now: datetime | None = None) -> datetime | None:
        with self._connection("set_function_paused") as conn, conn.transaction():
            return set_paused(conn, function, paused, self._at(now))


def register(
    conn: Connection, app: str, definitions: Sequence[FunctionDefinition], at: datetime | None
) -> RegistryChange:
    """Plan without the lock first: when nothing changed (every worker but the first), write nothing.

    The exclusive lock is *tried*, never waited for: a registration queued behind an open transactional
    send (which holds the lock shared until its caller commits) would queue every new send behind it."""
    names = [d.name for d in definitions]
    with conn.transaction():
        plan = plan_registration(app, definitions, _rows_for(conn, app, names), _generation(conn))
        if not plan.log:
            return plan.change
    delay, waited, warned = 0.005, 0.0, 0.0
    while True:
        change = _apply_if_locked(conn, app, definitions, names, at)
        if change is not None:
            return change
        time.sleep(delay)  # real waiting for other sessions' transactions, not a reading of time
        waited, delay = waited + delay, min(delay * 2, 0.5)
        if waited - warned >= 10:
            warned = waited
            log.warning("registering app %s: waited %.0fs for open ingest transactions to end", app, waited)


def _apply_if_locked(
    conn: Connection, app: str, definitions: Sequence[FunctionDefinition], names: list[str], at: datetime | None
) -> RegistryChange | None:
    """One transaction: take the registry lock if it is free, plan again under it, write the plan."""
    with conn.transaction():
        locked = _run(conn, "register_functions_lock", {}).fetchone()
        if locked is None or not locked[0]:
            return None
        plan = plan_registration(app, definitions, _rows_for(conn, app, names), _generation(conn))
        for owner, name in plan.retire:
            _run(conn, "register_functions_retire", {"app": owner, "name": name, "now": at})
        for upsert in plan.upserts:
            params = {"app": app, "name": upsert.name, "version": upsert.version}
            _run(conn, "register_functions_upsert", {**params, "definition": upsert.definition.decode(), "now": at})
        for entry in plan.log:
            _run(conn, "register_functions_log", {
                "now": at, "app": entry.app, "name": entry.name, "change": entry.change,
                "old_version": entry.old_version, "new_version": entry.new_version,
            })  # fmt: skip
        if plan.log:
            _run(conn, "register_functions_bump", {"generation": plan.change.generation})
        return plan.change


def listing(conn: Connection) -> RegistryListing:
    rows = _run(conn, "list_functions", {}).fetchall()
    listed = [_listed(row) for row in rows]
    generation, _ = listed[0] if listed else (0, None)
    return RegistryListing(generation, tuple(function for _, function in listed if function is not None))


def _listed(row: Sequence[Any]) -> tuple[int, RegisteredFunction | None]:
    """A list_functions row: the registry's generation, then a function's columns (NULL in an empty registry)."""
    generation, name, *columns = row
    return int(generation), None if name is None else _row((name, *columns))


@contextlib.contextmanager
def refusals() -> Iterator[None]:
    """Around append_events' work: the gate's SW001 error becomes RegistryChanged (nothing was written)."""
    try:
        yield
    except psycopg.Error as err:
        if err.sqlstate == REGISTRY_CHANGED:
            raise RegistryChanged(int(err.diag.message_primary or 0)) from None
        raise


def precheck(conn: Connection, caller: object | None, expected: int | None) -> int | None:
    """The generation to check inside append_events' statements (`stepwell_registry_check`, which raises).

    In a caller's open transaction an error would abort *their* transaction, so there the check runs
    first, without raising, and holds the lock for the rest of their transaction; nothing is left to
    check in the statements (None)."""
    if expected is None or caller is None or conn.autocommit:
        return expected
    _run(conn, "append_events_registry_lock", {})
    current = _generation(conn)  # a later statement than the lock: a snapshot taken after it was granted
    if current != expected:
        raise RegistryChanged(current)
    return None


def check(conn: Connection, expected: int | None) -> None:
    """First statement of append_events' transaction (pipelined: an error aborts the transaction)."""
    if expected is not None:
        _run(conn, "append_events_registry_check", {"generation": expected})


def _generation(conn: Connection) -> int:
    row = _run(conn, "register_functions_generation", {}).fetchone()
    if row is None:
        return 0
    (generation,) = row
    return int(generation)


def _rows_for(conn: Connection, app: str, names: list[str]) -> list[RegisteredFunction]:
    return [_row(row) for row in _run(conn, "register_functions_rows", {"app": app, "names": names}).fetchall()]


def set_paused(conn: Connection, function: str, paused: bool, at: datetime | None) -> datetime | None:
    """One statement: the pause row written (its first time kept) or deleted, which notifies the workers."""
    if not paused:
        _run(conn, "set_function_paused_resume", {"function": function})
        return None
    row = _run(conn, "set_function_paused_pause", {"function": function, "now": at}).fetchone()
    assert row is not None  # INSERT ... ON CONFLICT DO UPDATE ... RETURNING: always the row
    (paused_at,) = row
    return paused_at  # type: ignore[no-any-return]


def _row(row: Sequence[Any]) -> RegisteredFunction:
    app, name, version, definition, registered_at, updated_at, retired_at, *paused_at = row
    return RegisteredFunction(
        app=app,
        name=name,
        version=version,
        definition=orjson.dumps(orjson.loads(definition), option=orjson.OPT_SORT_KEYS),
        registered_at=registered_at,
        updated_at=updated_at,
        retired_at=retired_at,
        paused_at=paused_at[0] if paused_at else None,
    )


def _run(conn: Connection, name: str, params: dict[str, Any]) -> Cursor:
    return conn.cursor(row_factory=tuple_row).execute(R[name], params)
