"""Rescue expired leases and apply retention: small passes, outside the job system."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from stepwell.clock import Clock
from stepwell.errors import StepwellError
from stepwell.runtime.scheduler import CronSource, Scheduler
from stepwell.store.base import PurgeCounts, Retention, Store

log = logging.getLogger("stepwell.maintenance")


class Maintenance:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        retention: Retention,
        purge_every: timedelta = timedelta(hours=1),
        registry: CronSource | None = None,
    ) -> None:
        self.store, self.clock, self.retention, self.purge_every = store, clock, retention, purge_every
        self.scheduler = None if registry is None else Scheduler(registry, store)  # cron, when given the functions
        self.cron_started = 0  # runs started by the last pass's cron ticks
        self._last_purge: float | None = None

    def tick(self, now: datetime | None = None) -> tuple[int, PurgeCounts | None]:
        """One pass: rescue every expired lease; purge when it is due. Returns (rescued, purged or None)."""
        rescued = total = self.store.rescue_expired_leases(now=now)
        while rescued >= 1000:
            rescued = self.store.rescue_expired_leases(now=now)
            total += rescued
        self.store.wake_finished_fan_outs(now=now)
        self.store.fail_overdue_runs(now=now)
        purged = None
        moment = self.clock.monotonic()
        if self._last_purge is None or moment - self._last_purge >= self.purge_every.total_seconds():
            self._last_purge = moment
            purged = self.store.purge(self.retention, now=now)
        if self.scheduler is not None:
            self.cron_started = self.scheduler.tick(now)
        if total:
            log.info("rescued %d run(s) whose lease expired", total)
        return total, purged

    def next_cron_tick(self, now: datetime) -> datetime | None:
        """The earliest cron tick after `now` (for a virtual clock to skip to); None without cron."""
        return None if self.scheduler is None else self.scheduler.next_due(now)

    def pause(self, interval: float) -> float:
        """Seconds until the next pass: `interval`, or less when a cron tick comes before that."""
        due = None if self.scheduler is None else self.scheduler.seconds_until_due()
        return interval if due is None else min(interval, due + 0.01)


async def maintain(
    maintenance: Maintenance, stop: asyncio.Event, *, interval: float, on_cron: Callable[[], None] | None = None
) -> None:
    """Passes of `maintenance` (on a thread: the store blocks) until `stop`; a failing pass is logged and retried."""
    while not stop.is_set():
        pause = interval
        try:
            await asyncio.to_thread(maintenance.tick)
            pause = maintenance.pause(interval)
            if maintenance.cron_started and on_cron is not None:
                on_cron()
        except StepwellError as err:
            log.warning("maintenance pass failed: %s", err)
        except Exception:  # a bug must not silently end maintenance for this process's life
            log.exception("maintenance pass crashed; trying again next interval")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), pause)
