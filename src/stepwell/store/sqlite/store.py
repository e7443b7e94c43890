"""SQLite store: WAL, one writer connection per process, readers on their own connections.

Several processes may share the file; `BEGIN IMMEDIATE`, retried briskly (writelock.py),
serialises their writers. Within a process, writers that come together share one transaction and one
COMMIT, each in its own SAVEPOINT (groupcommit.py).
Times are integer microseconds (see times.py); `now` comes from the injected clock.
This class owns connections and transactions; the verbs are mixins, one module per group of
protocol verbs, with the same module names as the PostgreSQL store (ingest, claims, steps, fanout,
lifecycle, keys, reads, retention, cron, registry, apikeys, logs, push, audit, insight); the
rules they execute live beside them (admission, flow, waiting) and in the planner (store/plan/).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

from stepwell.clock import Clock, SystemClock
from stepwell.errors import StoreError, StoreFull, StoreUnavailable
from stepwell.store.sqlite import schema
from stepwell.store.sqlite.apikeys import ApiKeyVerbs
from stepwell.store.sqlite.audit import DashboardVerbs
from stepwell.store.sqlite.claims import ClaimVerbs
from stepwell.store.sqlite.cron import CronVerbs
from stepwell.store.sqlite.fanout import FanOutVerbs
from stepwell.store.sqlite.groupcommit import GroupCommit, WriteStats
from stepwell.store.sqlite.ingest import IngestVerbs
from stepwell.store.sqlite.insight import InsightVerbs
from stepwell.store.sqlite.keys import KeyVerbs
from stepwell.store.sqlite.lifecycle import LifecycleVerbs
from stepwell.store.sqlite.logs import ObservabilityVerbs
from stepwell.store.sqlite.push import PushVerbs
from stepwell.store.sqlite.reads import ReadVerbs
from stepwell.store.sqlite.registry import RegistryVerbs
from stepwell.store.sqlite.retention import RetentionVerbs
from stepwell.store.sqlite.schema import migration_script
from stepwell.store.sqlite.steps import StepVerbs
from stepwell.store.sqlite.times import EPOCH, micros
from stepwell.store.sqlite.watch import CommitWatcher

__all__ = ["SQLiteStore", "migration_script"]


class SQLiteStore(
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
    """The Store on SQLite: connections, transactions and time here; each group of verbs is a mixin in
    the module of the same name as PostgreSQL's (see docs/internals/architecture.md)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Clock | None = None,
        synchronous: str = "NORMAL",
        busy_timeout_ms: int = 10_000,
    ) -> None:
        if synchronous.upper() not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous: {synchronous!r} must be 'NORMAL' or 'FULL'")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.clock = clock or SystemClock()
        self._pragmas = (f"PRAGMA busy_timeout = {int(busy_timeout_ms)}", f"PRAGMA synchronous = {synchronous.upper()}")
        self._local = threading.local()
        self._all_connections: list[sqlite3.Connection] = []
        self._writer = self._connect()
        with self._translate("open"):
            self._writer.execute("PRAGMA journal_mode = WAL")
            self._writer.execute("PRAGMA busy_timeout = 0")  # begin_immediate waits instead (writelock.py)
        self._group = GroupCommit(self._writer, busy_timeout_ms / 1000)
        with contextlib.suppress(OSError):
            os.chmod(self.path, 0o600)

    # connections and transactions

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        for pragma in self._pragmas:
            conn.execute(pragma)
        self._all_connections.append(conn)
        return conn

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    @contextlib.contextmanager
    def _translate(self, operation: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as err:
            text = str(err).lower()
            if "full" in text:
                raise StoreFull(f"{operation}: the database is out of space ({err}); nothing was stored") from err
            if "locked" in text or "busy" in text:
                raise StoreUnavailable(f"{operation}: the database stayed locked ({err}); nothing was stored") from err
            raise StoreError(f"{operation}: {err}") from err
        except sqlite3.DatabaseError as err:
            raise StoreError(f"{operation}: {err}") from err

    @contextlib.contextmanager
    def _write(self, operation: str) -> Iterator[sqlite3.Connection]:
        """One write transaction as the verbs see it; it may share its COMMIT with other threads' (groupcommit.py)."""
        with self._translate(operation), self._group.transaction() as conn:
            yield conn

    def write_stats(self) -> WriteStats:
        """Writes and COMMITs of this store's writer connection so far (for benchmarks and tests)."""
        return self._group.stats()

    @contextlib.contextmanager
    def _read(self, operation: str) -> Iterator[sqlite3.Connection]:
        with self._translate(operation):
            yield self._reader()

    def _now(self, now: datetime | None) -> int:
        return micros((now or self.clock.now()) - EPOCH)

    def now(self) -> datetime:
        return self.clock.now()

    def close(self) -> None:
        for conn in self._all_connections:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        self._all_connections.clear()

    def migrate(self) -> list[int]:
        with self._write("migrate") as conn:
            return schema.migrate(conn, self._now(None))

    def applied_migrations(self) -> list[int]:
        with self._read("applied_migrations") as conn:
            return schema.applied(conn)

    def subscribe(self, on_work: Callable[[], None]) -> Callable[[], None] | None:
        """Wakes the worker when another connection commits (watch.py), so that a run sent by another
        process starts at once, not at the next poll; sends in the same process wake workers directly."""
        watcher = CommitWatcher(self.path, on_work)
        watcher.start()
        return watcher.stop

    # retention
