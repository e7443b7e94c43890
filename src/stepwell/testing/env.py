"""TestEnv: bind an app to a temporary store (SQLite, or the PostgreSQL `database_url` given) and a
virtual clock, and drain it with the app's own worker loop (`Worker.run_until_idle`), skipping time
when nothing is ready."""

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
from stepwell.runtime.worker import WorkerOptions
from stepwell.store.base import Retention, Store

_FOREVER = timedelta(days=365_000)
# One run at a time, in claim order, as the old inline drain did; nothing is purged, so a test can
# read every run afterwards however far the clock skipped.
_OPTIONS = WorkerOptions(
    concurrency=1, prefetch=49, claim_batch=50, lease=timedelta(seconds=30),
    retention=Retention(completed=_FOREVER, dead_letters=_FOREVER),
)  # fmt: skip


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
        self._worker = self.app.worker(_OPTIONS)
        self._worker.maintenance.tick()  # cron schedules count from here: the env's start is their deployment
        self._worker.close()
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

    def run_until_idle(
        self, *, skip_time: bool = True, max_runs: int = 100_000, until: datetime | timedelta | None = None
    ) -> int:
        """Execute ready runs until none is left; with `skip_time`, jump the clock to each next wake-up.

        Cron ticks that are due fire on every pass. Without `until`, the clock moves only while a
        run waits for a time (a sleep, a retry, a timeout), stopping at every cron tick on the way:
        a cron schedule alone never moves it, or an app with a cron function would never be idle.
        With `until` (a datetime, or a timedelta from now) the clock also moves through every cron
        tick up to `until`, and ends there.

        Returns how many attempts were executed.
        """
        if isinstance(until, timedelta):
            until = self.clock.now() + until
        if until is not None and not skip_time:
            raise ValueError("run_until_idle(until=...) moves the clock: it needs skip_time=True")
        return asyncio.run(self._drain(skip_time, max_runs, until))

    def _next_moment(self, until: datetime | None) -> datetime | None:
        """Where the clock jumps when nothing is ready: the next wake-up or cron tick, within the limit."""
        now = self.clock.now()
        wake_up = self.store.queue_stats().next_due  # a run held back by flow control is not due: time won't help
        limit = until if until is not None else wake_up
        if limit is None or limit <= now:
            return None
        tick = self._worker.maintenance.next_cron_tick(now)
        return min(moment for moment in (wake_up, tick, limit) if moment is not None)

    async def _drain(self, skip_time: bool, max_runs: int, until: datetime | None = None) -> int:
        def on_idle() -> bool:
            moment = self._next_moment(until) if skip_time else None
            if moment is None:
                return False
            self.clock.set(moment)
            return True

        self._worker = self.app.worker(_OPTIONS)  # afresh: a test may rebind or swap `env.app` between drains
        try:
            return await self._worker.run_until_idle(on_idle, max_runs=max_runs)
        finally:
            self._worker.close()

    def run(self, run_id: str) -> Run:
        return self.app.get_run(run_id)
