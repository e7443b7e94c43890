"""Helpers for the PostgreSQL-only tests: a worker in a thread, the LISTEN backends of a schema."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import psycopg

import stepwell
from stepwell.runtime.worker import WorkerOptions
from tests.conftest import PG_URL


def schema_of(url: str) -> str:
    """The schema a test URL points at (see `database_url_for`)."""
    return url.rsplit("search_path%3D", 1)[1]


def listener_pids(schema: str) -> list[int]:
    """Backends of the store's LISTEN connections for `schema` (they name themselves after it)."""
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", [f"stepwell-listen {schema}"]
        ).fetchall()
    return [row[0] for row in rows]


def terminate(pids: list[int]) -> None:
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        for pid in pids:
            conn.execute("SELECT pg_terminate_backend(%s)", [pid])


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


class WorkerThread:
    """`app.worker(options).run(stop)` on an event loop of its own thread."""

    def __init__(self, app: stepwell.App, options: WorkerOptions) -> None:
        self.worker = app.worker(options)
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="test-worker", daemon=True)

    def __enter__(self) -> WorkerThread:
        self._thread.start()
        assert self._ready.wait(10), "the worker did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(20)
        assert not self._thread.is_alive(), "the worker did not stop"

    def _main(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._ready.set()
            await self.worker.run(self._stop)

        asyncio.run(main())
