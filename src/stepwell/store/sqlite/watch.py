"""Cross-process wake-ups on SQLite: a thread that notices other connections' commits.

SQLite has no LISTEN/NOTIFY, so a worker only polled, and a run sent by another process (the
`stepwell send` of a newcomer, a web app beside `stepwell dev`) waited for the next poll. `PRAGMA
data_version` changes whenever another connection commits to the file; reading it touches only
the WAL index in shared memory, so checking it every few milliseconds costs next to nothing.
Like a notification on PostgreSQL, a change is only a hint: the worker claims, and polls anyway.

What a check costs is mostly the thread waking up (40-80 microseconds on a busy 2-core machine),
so the interval adapts: every 2 ms while commits come and for half a second after the last one
(a run sent then waits ~1 ms), doubling up to 20 ms once nothing has changed for that long. An
idle watcher then costs ~0.5% of a core, and a first send after a quiet spell waits ~10 ms.
A file-system notification (inotify on the -wal file) would cost nothing when idle, but needs a
dependency, and a fallback to this loop where it is missing.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

from stepwell.clock import SystemClock

log = logging.getLogger("stepwell.store.sqlite.watch")
FASTEST = 0.002  # seconds between two reads of data_version while commits come
SLOWEST = 0.02  # seconds between two reads when nothing changed for a while: the idle cost
LINGER = 0.5  # seconds the watcher stays at FASTEST after the last change (a burst of sends)
RETRY_AFTER = 1.0  # seconds, after the file could not be read
ARM_TIMEOUT = 2.0  # seconds `start` waits for the first read of data_version
REAL_TIME = SystemClock()  # the pace is of real waits, also under a store's virtual clock


class CommitWatcher:
    def __init__(
        self, path: Path, on_work: Callable[[], None], *, fastest: float = FASTEST, slowest: float = SLOWEST
    ) -> None:
        self.path, self.on_work = path, on_work
        self.pace = Pace(fastest, slowest)
        self._stop = threading.Event()
        self._armed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stepwell-sqlite-watch", daemon=True)

    def start(self, wait: float = ARM_TIMEOUT) -> bool:
        """Start the thread and wait (at most `wait` seconds) until it has read its first data_version;
        True once watching. A commit before that first read would otherwise go unnoticed until a poll."""
        self._thread.start()
        return self._armed.wait(wait)

    def stop(self) -> None:
        """Ask the thread to end (within one interval); does not block."""
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._watch()
            except sqlite3.Error as err:  # a file replaced or locked for long: try again, the worker polls anyway
                log.debug("watching %s failed (%s); again in %.0fs", self.path, err, RETRY_AFTER)
                self._stop.wait(RETRY_AFTER)

    def _watch(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=1)
        try:
            last = _version(conn)
            self._armed.set()
            self.pace.changed(REAL_TIME.monotonic())
            while not self._stop.wait(self.pace.interval):
                version = _version(conn)
                self.pace.checked(REAL_TIME.monotonic(), changed=version != last)
                if version != last:
                    last = version
                    self._wake()
        finally:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def _wake(self) -> None:
        try:
            self.on_work()
        except Exception:  # a subscriber that went away must not end the watcher
            log.debug("on_work raised", exc_info=True)


class Pace:
    """The interval between two checks: `fastest` until LINGER seconds after the last change, then
    doubling at each unchanged check up to `slowest`. Time comes in as arguments, so tests drive it."""

    def __init__(self, fastest: float, slowest: float) -> None:
        if not 0 < fastest <= slowest:
            raise ValueError(f"watch intervals: need 0 < fastest ({fastest}) <= slowest ({slowest})")
        self.fastest, self.slowest = fastest, slowest
        self.interval = fastest
        self._last_change = 0.0

    def changed(self, now: float) -> None:
        self._last_change, self.interval = now, self.fastest

    def checked(self, now: float, *, changed: bool) -> None:
        if changed:
            self.changed(now)
        elif now - self._last_change > LINGER:
            self.interval = min(self.slowest, self.interval * 2)


def _version(conn: sqlite3.Connection) -> int:
    (version,) = conn.execute("PRAGMA data_version").fetchone()
    return int(version)
