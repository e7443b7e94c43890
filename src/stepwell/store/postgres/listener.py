"""LISTEN on one dedicated connection, in a daemon thread, and turn notifications into wake-ups.

A notification is only a hint: workers poll anyway. What must never happen is a listener that
silently stops (the failure several PostgreSQL queues shipped), so the thread reconnects with
backoff forever, and after every (re)connect it LISTENs first, then asks for a scan (work that
became ready while it was away is found), and only then consumes notifications.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from typing import Any

import psycopg

from stepwell.store.sqlfile import load_queries

log = logging.getLogger("stepwell.store.postgres.listener")
_Q = load_queries("stepwell.store.postgres")

WAIT_SLICE = 1.0  # seconds between checks of the stop flag while no notification comes
MAX_BACKOFF = 5.0
ARM_TIMEOUT = 5.0  # seconds `start` waits for the first LISTEN; after that the worker polls until it comes


class Listener:
    def __init__(self, conninfo: str, kwargs: dict[str, Any], on_work: Callable[[], None]) -> None:
        self.conninfo, self.kwargs, self.on_work = conninfo, kwargs, on_work
        self._stop = threading.Event()
        self._armed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stepwell-listen", daemon=True)

    def start(self, wait: float = ARM_TIMEOUT) -> bool:
        """Start the thread and wait (at most `wait` seconds) for its first LISTEN; True once listening.

        A worker that claimed before its LISTEN took effect would miss a notification sent in
        between, and that run would wait a whole poll interval (it did, in CI)."""
        self._thread.start()
        return self._armed.wait(wait)

    def stop(self) -> None:
        """Ask the thread to end; it closes its connection within WAIT_SLICE. Does not block."""
        self._stop.set()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.conninfo, **self.kwargs) as conn:
                    schema = self._listen(conn)
                    failures = 0
                    self._armed.set()
                    self._wake()
                    self._consume(conn, schema)
            except Exception as err:  # whatever it was, the listener must not die: reconnect
                failures += 1
                delay = min(0.1 * 2 ** (failures - 1), MAX_BACKOFF) * random.uniform(0.8, 1.2)
                log.warning(
                    "LISTEN connection failed (%s); reconnecting in %.1fs (workers keep polling)",
                    err,
                    delay,
                    exc_info=not isinstance(err, psycopg.Error),  # a driver error is expected; a bug is not
                )
                self._stop.wait(delay)

    @staticmethod
    def _listen(conn: psycopg.Connection[Any]) -> str:
        """Name the session after the schema (visible in pg_stat_activity), then LISTEN; returns the schema."""
        row = conn.execute(_Q["listener_identity"]).fetchone()
        conn.execute(_Q["listen"])
        if row is None:
            return ""
        _, schema = row
        return str(schema)

    def _consume(self, conn: psycopg.Connection[Any], schema: str) -> None:
        while not self._stop.is_set():
            for notify in conn.notifies(timeout=WAIT_SLICE):
                if notify.payload == schema and not self._stop.is_set():
                    self._wake()

    def _wake(self) -> None:
        if self._stop.is_set():
            return
        try:
            self.on_work()
        except Exception:  # a subscriber that went away must not end the listener
            log.debug("on_work raised", exc_info=True)
