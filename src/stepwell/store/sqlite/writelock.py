"""Taking SQLite's write lock when several processes want it: try often, never fall asleep for long.

SQLite's own busy handler retries a locked `BEGIN IMMEDIATE` on a schedule that grows to one try
every 100 ms. When other processes write back to back (a fleet draining a backlog), a process
that only looks every 100 ms seldom finds the lock free, and in CI one waited more than five
seconds: its heartbeats could not renew its leases, they lapsed, and another worker ran its
runs a second time: the busy handler's growing pauses also hand the lock to whoever started
waiting last. The writer connection therefore has no busy timeout of its own and this loop
retries after a short random pause that never grows, so a long waiter tries as often as a new
one and gets its turn within a few transactions. A failed try costs microseconds.
"""

from __future__ import annotations

import random
import sqlite3
import time

from stepwell.clock import SystemClock

PAUSES = (0.0002, 0.0015)  # seconds between two tries, drawn uniformly: waiters do not fall into step


def begin_immediate(conn: sqlite3.Connection, timeout: float) -> None:
    """`BEGIN IMMEDIATE` on `conn` (whose busy timeout is 0), retried until `timeout` seconds passed.

    Raises the last `sqlite3.OperationalError` ("database is locked") when the lock stayed taken;
    the caller translates it."""
    clock = SystemClock()  # a real wait, whatever clock the store keeps for its business times
    deadline = clock.monotonic() + timeout
    while True:
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as err:
            if not _is_busy(err) or clock.monotonic() >= deadline:
                raise
        time.sleep(random.uniform(*PAUSES))


def _is_busy(err: sqlite3.OperationalError) -> bool:
    text = str(err).lower()
    return "locked" in text or "busy" in text
