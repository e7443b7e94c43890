"""TestEnv: bind an app to a temporary SQLite store and a virtual clock, and drain it inline."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from stepwell.app import App, open_store
from stepwell.clock import Clock, VirtualClock
from stepwell.model.records import Run
from stepwell.runtime.processing import process_claimed
from stepwell.store.base import Store

_LEASE = timedelta(seconds=30)


async def _inline(fn: Any, *args: Any) -> Any:
    return fn(*args)


class TestEnv:
    """In-process test harness. Time moves only when you advance it, or when the drain skips ahead."""

    __test__ = False  # not a pytest test class

    def __init__(self, app: App, *, start: datetime | None = None, database_url: str | None = None) -> None:
        self.app = app
        self.clock = VirtualClock(start)
        self._database_url = database_url
        self._tmp: Path | None = None
        self._previous: tuple[Store | None, Clock] | None = None

    def __enter__(self) -> TestEnv:
        if self._database_url is None:
            self._tmp = Path(tempfile.mkdtemp(prefix="stepwell-test-"))
            url = f"sqlite:///{self._tmp / 'test.db'}"
        else:
            url = self._database_url
        store = open_store(url, self.clock)
        store.migrate()
        self._previous = self.app.bind(store, self.clock)
        return self

    def __exit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        self.store.close()
        assert self._previous is not None
        self.app.bind(*self._previous)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)

    @property
    def store(self) -> Store:
        return self.app.store

    def send(self, name: str, data: Any = None, **kwargs: Any) -> Any:
        return self.app.send(name, data, **kwargs)

    def advance(self, delta: timedelta | None = None, **parts: float) -> datetime:
        return self.clock.advance(delta, **parts)

    def run_until_idle(self, *, skip_time: bool = True, max_runs: int = 100_000) -> int:
        """Execute ready runs until none is left; with `skip_time`, jump the clock to each next wake-up.

        Returns how many attempts were executed.
        """
        return asyncio.run(self._drain(skip_time, max_runs))

    async def _drain(self, skip_time: bool, max_runs: int) -> int:
        executed = 0
        while executed < max_runs:
            self.store.rescue_expired_leases()
            limit = min(50, max_runs - executed)
            claimed = self.store.claim_runs(worker_id="stepwell-testing", limit=limit, lease=_LEASE)
            if not claimed:
                next_due = self.store.queue_stats().next_due
                if not skip_time or next_due is None or next_due <= self.clock.now():
                    return executed
                self.clock.set(next_due)
                continue
            for run in claimed:
                settlement = await process_claimed(self.app.engine, run, _inline)
                if settlement is not None:
                    self.store.settle_runs([settlement])
                executed += 1
        return executed

    def run(self, run_id: str) -> Run:
        return self.app.get_run(run_id)
