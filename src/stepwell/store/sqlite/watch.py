"""Cross-process wake-ups on SQLite: a thread that notices other connections' commits.

SQLite has no LISTEN/NOTIFY, so a worker only polled, and a run sent by another process (the
`stepwell send` of a newcomer, a web app beside `stepwell dev`) waited for the next poll. `PRAGMA
data_version` changes whenever another connection commits to the file; reading it touches only
the WAL index in shared memory, so checking it every few milliseconds costs next to nothing.
Like a notification on PostgreSQL, a change is only a hint: the worker claims, and polls anyway.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("stepwell.store.sqlite.watch")
CHECK_EVERY = 0.05  # seconds between two reads of data_version: a run waits 25 ms on average
RETRY_AFTER = 1.0  # seconds, after the file could not be read
ARM_TIMEOUT = 2.0  # seconds `start` waits for the first read of data_version


class CommitWatcher:
    def __init__(self, path: Path, on_work: Callable[[], None], *, interval: float = CHECK_EVERY) -> None:
        self.path, self.on_work, self.interval = path, on_work, interval
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
            while not self._stop.wait(self.interval):
                version = _version(conn)
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


def _version(conn: sqlite3.Connection) -> int:
    (version,) = conn.execute("PRAGMA data_version").fetchone()
    return int(version)
