"""PostgreSQL store: psycopg 3, a small bounded pool, SKIP LOCKED claims, LISTEN/NOTIFY wake-ups.

This module holds the connections, time, schema and wake-ups; the verbs are mixins, one module per
group of protocol verbs, with the same module names as the SQLite store (ingest, claims, steps,
fanout, lifecycle, keys, reads, retention, cron, registry, apikeys, logs, push, audit, insight).

Pooled connections run in autocommit, so a verb that is one statement costs one round trip; a
verb of several statements runs them in one transaction, pipelined. Batches travel as arrays
(see queries.sql). Time is the database's (`now()`) unless the store was given a clock (tests).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from datetime import datetime

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from stepwell.clock import Clock
from stepwell.errors import StoreUnavailable
from stepwell.store.postgres.apikeys import ApiKeyVerbs
from stepwell.store.postgres.audit import DashboardVerbs
from stepwell.store.postgres.claims import ClaimVerbs
from stepwell.store.postgres.cron import CronVerbs
from stepwell.store.postgres.fanout import FanOutVerbs
from stepwell.store.postgres.ingest import IngestVerbs
from stepwell.store.postgres.insight import InsightVerbs
from stepwell.store.postgres.keys import KeyVerbs
from stepwell.store.postgres.lifecycle import LifecycleVerbs
from stepwell.store.postgres.listener import Listener
from stepwell.store.postgres.logs import ObservabilityVerbs
from stepwell.store.postgres.options import (
    PostgresOptions,
    connection_kwargs,
    listener_kwargs,
    session_settings,
    split_url,
)
from stepwell.store.postgres.outbox import caller_connection
from stepwell.store.postgres.push import PushVerbs
from stepwell.store.postgres.reads import ReadVerbs
from stepwell.store.postgres.registry import RegistryVerbs
from stepwell.store.postgres.retention import RetentionVerbs
from stepwell.store.postgres.statements import Connection, Q, one, run, translate
from stepwell.store.postgres.steps import StepVerbs
from stepwell.store.sqlfile import load_migrations

_PACKAGE = "stepwell.store.postgres"
log = logging.getLogger("stepwell.store.postgres")


class PostgresStore(
    IngestVerbs,
    ClaimVerbs,
    StepVerbs,
    FanOutVerbs,
    LifecycleVerbs,
    KeyVerbs,
    ReadVerbs,
    RetentionVerbs,
    CronVerbs,
    RegistryVerbs,
    ApiKeyVerbs,
    ObservabilityVerbs,
    PushVerbs,
    DashboardVerbs,
    InsightVerbs,
):
    """The Store on PostgreSQL: connections, time, schema and wake-ups here; each group of verbs is a
    mixin in the module of the same name as SQLite's (see docs/internals/architecture.md)."""

    def __init__(self, url: str, *, clock: Clock | None = None, options: PostgresOptions | None = None) -> None:
        """`clock=None`: the database clock rules every time; a clock pins it (tests pass a VirtualClock).

        `options` are overridden by `stepwell_*` query parameters of the URL (see PostgresOptions).
        """
        self.conninfo, self.options = split_url(url, options)
        self.clock = clock
        self._settings = session_settings(self.options)
        self._pool = ConnectionPool(
            self.conninfo,
            kwargs=connection_kwargs(self.conninfo, self.options),
            min_size=1,
            max_size=self.options.pool_max,
            timeout=self.options.pool_timeout,
            configure=self._configure,
            name="stepwell",
            num_workers=1,
            open=False,  # opened by the first verb: migrate's direct connection comes first, never beside it
        )
        self._pool_opened = False
        self._pool_lock = threading.Lock()
        self._listeners: set[Listener] = set()
        self._listeners_lock = threading.Lock()
        self._admitting = 0  # how many claims to come go straight to admitting (flow control), without a first try

    # connections and time

    def _configure(self, conn: Connection) -> None:
        """Every new pooled session: statement and idle-in-transaction timeouts, UTC."""
        run(conn, "configure_session", self._settings)

    @contextlib.contextmanager
    def _connection(self, operation: str, caller: object | None = None) -> Iterator[Connection]:
        """A pooled connection (autocommit), or the caller's own (their transaction, never committed here)."""
        with translate(operation):
            if caller is not None:
                yield caller_connection(caller)
                return
            with self._open_pool().connection() as conn:
                yield conn

    def _open_pool(self) -> ConnectionPool[Connection]:
        """The pool, opened on first use. Opening it in `__init__` would let its first connection
        overlap migrate's direct one: one connection over `stepwell_pool_max` per process at start."""
        if not self._pool_opened:
            with self._pool_lock:
                if not self._pool_opened:
                    self._pool.open()
                    self._pool_opened = True
        return self._pool

    def _at(self, now: datetime | None) -> datetime | None:
        """The time to pass as %(now)s: None means the database's now()."""
        if now is not None:
            return now
        return None if self.clock is None else self.clock.now()

    def now(self) -> datetime:
        if self.clock is not None:
            return self.clock.now()
        with self._connection("now") as conn:
            return one(conn, "now", {})[0]  # type: ignore[no-any-return]

    def close(self) -> None:
        with self._listeners_lock:
            listeners, self._listeners = list(self._listeners), set()
        for listener in listeners:
            listener.stop()
        self._pool.close()

    # schema

    def migrate(self) -> list[int]:
        """Under a transaction-scoped advisory lock (per schema), so that concurrent starters queue up.

        The first thing a process does with the store: a direct connection first says why the
        database cannot be reached, if it cannot."""
        self._direct_connection().close()
        applied: list[int] = []
        with self._connection("migrate") as conn, conn.transaction():
            run(conn, "migrate_lock", {})
            run(conn, "migrate_create_table", {})
            done = {version for (version,) in run(conn, "applied_migrations", {}).fetchall()}
            for version, name, script in load_migrations(_PACKAGE):
                if version not in done:
                    conn.execute(script.encode())  # a whole file, no parameters: one simple-protocol script
                    run(conn, "migrate_record", {"version": version, "name": name})
                    applied.append(version)
        return applied

    def applied_migrations(self) -> list[int]:
        with translate("applied_migrations"), self._direct_connection() as conn:
            if not one(conn, "applied_migrations_table_exists", {})[0]:
                return []
            return sorted(version for (version,) in run(conn, "applied_migrations", {}).fetchall())

    def _direct_connection(self) -> Connection:
        """A connection of its own, not the pool's: a wrong URL (role, password, database, host) fails
        at once with the server's reason, said once, instead of after the pool's timeout without it."""
        try:
            return psycopg.connect(self.conninfo, **connection_kwargs(self.conninfo, self.options))
        except psycopg.Error as err:
            reason = " ".join(str(err).split())
            raise StoreUnavailable(f"cannot connect to PostgreSQL: {reason}") from None

    # wake-ups

    def subscribe(self, on_work: Callable[[], None]) -> Callable[[], None] | None:
        """LISTEN in a daemon thread that reconnects forever; None when `listen` is off (PgBouncer)."""
        if not self.options.listen:
            return None
        listener = Listener(self.conninfo, listener_kwargs(self.conninfo, self.options), on_work)
        with self._listeners_lock:
            self._listeners.add(listener)
        if not listener.start():
            log.warning("LISTEN is not set up yet; this process polls until it is")

        def unsubscribe() -> None:
            with self._listeners_lock:
                self._listeners.discard(listener)
            listener.stop()

        return unsubscribe


def migration_script() -> str:
    """Every migration as one SQL script, with its bookkeeping: what `migrate()` applies to an empty schema.

    For teams whose own tool (Alembic, Django) applies schema changes; run it in one transaction.
    """
    parts = [
        "-- Stepwell schema for PostgreSQL (what `stepwell migrate` applies). Run it in one transaction.",
        Q["migrate_create_table"] + ";",
    ]
    record = sql.SQL("INSERT INTO stepwell_migrations (version, name) VALUES ({}, {}) ON CONFLICT DO NOTHING;")
    for version, name, script in load_migrations(_PACKAGE):
        parts += [f"-- {name}", script.strip(), record.format(version, name).as_string()]
    return "\n\n".join(parts) + "\n"
