"""Group commit on SQLite: writers of one process that come together share one transaction and one COMMIT.

A small write's COMMIT costs about half of it (190 µs of a 380 µs `send`), and the writers of one
process queue for one writer connection anyway. So the writer holding the connection, once its own
work is done, looks whether others wait for it: if so it hands them the connection with the
transaction still open and waits; the last writer of the group commits for all of them (a
leader/follower scheme, without a writer thread: each writer's work runs in its own thread, so no
thread hop). Each writer's work runs inside its own SAVEPOINT: one that fails is rolled back alone
and raises in its own thread only, and the group goes on. Every writer returns only after the
COMMIT that holds its work, and raises if that COMMIT failed: "returned" still means committed.

A group closes after GROUP_LIMIT writers or GROUP_SPAN seconds after its BEGIN, so that a busy
process does not keep the file's write lock from other processes for long (writelock.py). A writer
alone commits at once, as before: grouping only ever happens when writers already wait.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from stepwell.clock import SystemClock
from stepwell.store.sqlite.writelock import begin_immediate

GROUP_LIMIT = 64  # writers in one transaction at most
GROUP_SPAN = 0.02  # seconds after BEGIN IMMEDIATE after which no writer joins the group any more
RESCUE_AFTER = 0.05  # seconds a writer that handed on waits before it checks that somebody took over


@dataclass(frozen=True, slots=True)
class WriteStats:
    """What the writer connection did since the store opened: `writes / commits` is the mean group size."""

    writes: int  # write transactions asked for by the verbs, committed as part of a group
    commits: int  # COMMITs that succeeded
    largest: int  # the most writes one COMMIT held


@dataclass(slots=True)
class _Group:
    """One open transaction and the writers whose work it holds."""

    begun: float
    writers: int = 0
    failure: sqlite3.Error | None = None  # set when the group's transaction is lost: every writer raises
    done: threading.Event | None = None  # made by the first writer that hands on: a writer alone needs none


class GroupCommit:
    """The writer connection of one SQLiteStore, shared by its writing threads (see the module doc)."""

    def __init__(
        self, conn: sqlite3.Connection, lock_timeout: float, *, limit: int = GROUP_LIMIT, span: float = GROUP_SPAN
    ) -> None:
        if limit < 1 or span < 0:
            raise ValueError(f"group commit: limit {limit!r} must be >= 1 and span {span!r} >= 0")
        self._conn = conn
        self._lock_timeout = lock_timeout
        self._limit = limit
        self._span = span
        self._clock = SystemClock()  # real time: how long the file's write lock is held
        self._turn = threading.Lock()  # held by the one thread that uses the connection now
        self._queue = threading.Lock()  # guards _waiting
        self._waiting = 0  # threads blocked on _turn: the holder hands the group on when there are any
        self._group: _Group | None = None
        self._writes = self._commits = self._largest = 0

    def stats(self) -> WriteStats:
        return WriteStats(self._writes, self._commits, self._largest)

    @property
    def waiting(self) -> int:
        """Threads blocked until the connection is free: they join the open group when it is handed on."""
        with self._queue:
            return self._waiting

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """The caller's part of a group transaction: leaves once the COMMIT holding it is done.

        Raises the caller's own error when its body failed (its part undone, the group unharmed),
        and the group's `sqlite3.Error` when BEGIN or the group's COMMIT failed."""
        self._take_turn()
        group = self._group
        leader = group is None
        if group is None:
            try:
                group = self._begin()
            except BaseException:
                self._turn.release()
                raise
        try:
            if not leader:  # the leader is alone in the transaction while its body runs: no savepoint needed
                self._conn.execute("SAVEPOINT writer")
            yield self._conn
            if not leader:
                self._conn.execute("RELEASE writer")
        except BaseException as err:
            if leader:
                self._abandon(group)
            else:
                self._undo_part(group, err)
                self._finish(group)
            raise
        self._finish(group)
        if group.failure is not None:
            raise type(group.failure)(*group.failure.args) from group.failure

    def _take_turn(self) -> None:
        if self._turn.acquire(blocking=False):
            return
        with self._queue:
            self._waiting += 1
        try:
            self._turn.acquire()
        finally:
            with self._queue:
                self._waiting -= 1

    def _begin(self) -> _Group:
        begin_immediate(self._conn, self._lock_timeout)
        self._group = _Group(self._clock.monotonic())
        return self._group

    def _undo_part(self, group: _Group, err: BaseException) -> None:
        """Roll back the failed writer's part only; when SQLite dropped the whole transaction (a full disk,
        an I/O error), the group is lost and every writer in it raises."""
        if self._conn.in_transaction:
            try:
                self._conn.execute("ROLLBACK TO writer")
                self._conn.execute("RELEASE writer")
                return
            except sqlite3.Error as undo_err:
                err = undo_err
        if group.failure is None:
            lost = err if isinstance(err, sqlite3.Error) else None
            group.failure = lost or sqlite3.OperationalError("the write transaction was rolled back")

    def _abandon(self, group: _Group) -> None:
        """The leader's body failed before anybody joined: roll the transaction back; waiters start anew."""
        try:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
        finally:
            self._group = None
            if group.done is not None:
                group.done.set()
            self._turn.release()

    def _finish(self, group: _Group) -> None:
        """Hand the open transaction to a waiting writer, or end it; then wait for its end."""
        group.writers += 1
        if group.failure is None and self._joinable(group):
            done = group.done = group.done or threading.Event()
            self._turn.release()
            self._await(group, done)
        else:
            self._end(group)

    def _joinable(self, group: _Group) -> bool:
        if not self._waiting:  # read without the lock: one that comes just after us starts the next group
            return False
        return group.writers < self._limit and self._clock.monotonic() - group.begun < self._span

    def _await(self, group: _Group, done: threading.Event) -> None:
        """Wait for the group's end. Should the writer that was waiting never take its turn (interrupted
        while blocked), nobody would end the group: whoever finds the connection free ends it."""
        while not done.wait(RESCUE_AFTER):
            if self._turn.acquire(blocking=False):
                if self._group is group:
                    self._end(group)
                else:
                    self._turn.release()

    def _end(self, group: _Group) -> None:
        """COMMIT the group (ROLLBACK what is left of it when it failed), wake its writers, free the turn."""
        try:
            if group.failure is None:
                self._conn.execute("COMMIT")
                self._writes += group.writers
                self._commits += 1
                self._largest = max(self._largest, group.writers)
        except sqlite3.Error as err:
            group.failure = err
        finally:
            if self._conn.in_transaction:  # the group failed, or COMMIT did: nothing of it stays
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
            self._group = None
            if group.done is not None:
                group.done.set()
            self._turn.release()
