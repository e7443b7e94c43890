"""The worker: claim ready runs in batches, execute them, settle outcomes in batches.

Async functions run on this event loop, sync functions on a thread pool; the store is reached
through a small executor of its own. Leases are renewed by a separate thread. On stop, the
worker claims nothing more, gives in-flight runs `shutdown_timeout` to finish, then releases
their leases so another worker takes them at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from stepwell.errors import StepwellError
from stepwell.model.ids import new_token
from stepwell.runtime.engine import Engine
from stepwell.runtime.heartbeat import Heartbeat
from stepwell.runtime.maintenance import Maintenance
from stepwell.runtime.processing import process_claimed
from stepwell.runtime.wakeup import Wakeups
from stepwell.store.base import ClaimedRun, Lease, Retention, Settlement

log = logging.getLogger("stepwell.worker")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    concurrency: int = 10
    lease: timedelta = timedelta(seconds=30)
    poll_interval: float = 0.5
    shutdown_timeout: float = 10.0
    claim_batch: int = 100
    prefetch: int | None = None  # runs claimed ahead of free slots; default: as many as `concurrency`
    maintenance: bool = True
    rescue_interval: float = 5.0
    retention: Retention = Retention()

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"concurrency: {self.concurrency} must be >= 1")
        if self.lease < timedelta(seconds=1):
            raise ValueError(f"lease: {self.lease} must be at least 1 second")
        if self.prefetch is None:
            object.__setattr__(self, "prefetch", self.concurrency)
        elif self.prefetch < 0:
            raise ValueError(f"prefetch: {self.prefetch} must be >= 0")


class Worker:
    def __init__(
        self,
        engine: Engine,
        options: WorkerOptions | None = None,
        *,
        wakeups: Wakeups | None = None,
        worker_id: str | None = None,
    ) -> None:
        self.engine = engine
        self.store, self.clock = engine.store, engine.clock
        self.options = options or WorkerOptions()
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{new_token()[:8]}"
        self.wakeups = wakeups
        self._held: dict[str, Lease] = {}  # claimed and not yet settled
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._buffer: deque[ClaimedRun] = deque()  # claimed, leased, not started yet
        self._pending: list[Settlement] = []
        self._store_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="stepwell-store")
        self._user_pool = ThreadPoolExecutor(max_workers=self.options.concurrency, thread_name_prefix="stepwell-run")
        self.processed = 0
        self.maintenance = Maintenance(
            self.store, self.clock, retention=self.options.retention, registry=self.engine.registry
        )

    async def _store(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._store_pool, lambda: fn(*args, **kwargs))

    async def _run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._user_pool, fn, *args)

    async def run(self, stop: asyncio.Event) -> None:
        """Work until `stop` is set, then shut down gracefully."""
        self._wake = asyncio.Event()
        self._settled = asyncio.Event()
        loop = asyncio.get_running_loop()
        if self.wakeups:
            self.wakeups.register(loop, self._wake)

        def on_work() -> None:
            loop.call_soon_threadsafe(self._wake.set)

        unsubscribe = self.store.subscribe(on_work)
        heartbeat = Heartbeat(self.store, self.options.lease, lambda: list(self._held.values()), self._lost)
        heartbeat.start()
        background = [asyncio.create_task(self._flush_forever())]
        if self.options.maintenance:
            background.append(asyncio.create_task(self._maintain_forever()))
        log.info("worker %s started (concurrency %d)", self.worker_id, self.options.concurrency)
        try:
            await self._claim_until(stop)
        finally:
            await self._shutdown(background)
            heartbeat.stop()
            if unsubscribe is not None:
                unsubscribe()
            if self.wakeups:
                self.wakeups.unregister(self._wake)
            self.close()
            log.info("worker %s stopped after %d runs", self.worker_id, self.processed)

    def close(self) -> None:
        """Let go of the worker's threads (run() does this when it stops)."""
        self._store_pool.shutdown(wait=False)
        self._user_pool.shutdown(wait=False, cancel_futures=True)

    async def run_until_idle(self, on_idle: Callable[[], bool], *, max_runs: int) -> int:
        """Work until nothing is ready and nothing is in flight, then ask `on_idle` whether time
        moved on (True: look again) or the work is done (False). For a virtual clock: the claim,
        execute and settle paths are those of run(), with a maintenance pass (rescue, fan-outs,
        run timeouts, cron) before each claim instead of on a timer. Returns the attempts executed.
        """
        self._wake, self._settled = asyncio.Event(), asyncio.Event()
        start = self.processed
        try:
            while self.processed - start < max_runs:
                await self._store(self.maintenance.tick)
                limit = min(self.options.claim_batch, max_runs - (self.processed - start))
                claimed = await self._store(
                    self.store.claim_runs, worker_id=self.worker_id, limit=limit, lease=self.options.lease
                )
                if not claimed:
                    if on_idle():
                        continue
                    break
                for run in claimed:
                    self._held[run.run_id] = run.lease
                self._buffer.extend(claimed)
                await self._work_off_buffer()
        finally:
            await self._shutdown([])
        return self.processed - start

    async def _work_off_buffer(self) -> None:
        """Run every buffered run, `concurrency` at a time, settling each batch of outcomes as it ends."""
        while self._buffer or self._tasks:
            self._start_buffered()
            await asyncio.wait(list(self._tasks.values()), return_when=asyncio.FIRST_COMPLETED)
            await self._flush()

    async def _claim_until(self, stop: asyncio.Event) -> None:
        """Keep `concurrency` runs going, from a small local buffer refilled in large claims.

        Claiming one run per finished run costs a transaction each; claiming up to `prefetch`
        ahead turns a drain into a few large claims. Buffered runs are leased (and heartbeated)
        like running ones, and released at shutdown.
        """
        failures = 0
        capacity = self.options.concurrency + (self.options.prefetch or 0)
        while not stop.is_set():
            self._wake.clear()  # before claiming: a wake-up that arrives during the claim must not be lost
            self._start_buffered()
            room = capacity - len(self._tasks) - len(self._buffer)
            full_batch = False
            if room > 0 and (len(self._buffer) == 0 or room >= capacity // 2):
                limit = min(room, self.options.claim_batch)
                try:
                    claimed = await self._store(
                        self.store.claim_runs, worker_id=self.worker_id, limit=limit, lease=self.options.lease
                    )
                    failures = 0
                except StepwellError as err:
                    failures += 1
                    delay = min(0.1 * 2**failures, 10.0)
                    log.warning("claim failed (%s); retrying in %.1fs", err, delay)
                    await _wait_any(stop, None, delay)
                    continue
                for run in claimed:
                    self._held[run.run_id] = run.lease
                self._buffer.extend(claimed)
                self._start_buffered()
                full_batch = len(claimed) == limit
            if full_batch and len(self._tasks) < self.options.concurrency:
                await asyncio.sleep(0)
                continue
            await _wait_any(stop, self._wake, self.options.poll_interval)

    def _start_buffered(self) -> None:
        while self._buffer and len(self._tasks) < self.options.concurrency:
            claimed = self._buffer.popleft()
            self._tasks[claimed.run_id] = asyncio.create_task(self._process(claimed))

    async def _process(self, claimed: ClaimedRun) -> None:
        try:
            settlement = await process_claimed(self.engine, claimed, self._run_sync)
        except Exception:  # a bug of ours: keep the worker alive, the lease will expire and rescue
            log.exception("run %s could not be processed", claimed.run_id)
            settlement = None
        finally:
            self._tasks.pop(claimed.run_id, None)
            self._wake.set()
        self.processed += 1
        if settlement is None:
            self._held.pop(claimed.run_id, None)
        else:
            self._pending.append(settlement)
            self._settled.set()

    def _lost(self, run_ids: list[str]) -> None:
        lost = [run_id for run_id in run_ids if self._held.pop(run_id, None) is not None]
        if lost:  # a run settled while the heartbeat was in flight is not lost
            log.warning("lost the lease of %d run(s): %s", len(lost), ", ".join(lost[:5]))

    async def _flush_forever(self) -> None:
        while True:
            await self._settled.wait()
            if len(self._pending) < self.options.concurrency // 2:
                await asyncio.sleep(0.002)  # let outcomes finishing together share one transaction
            self._settled.clear()
            await self._flush()

    async def _flush(self) -> None:
        failures = 0
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                lost = await self._store(self.store.settle_runs, batch)
            except StepwellError as err:
                self._pending = batch + self._pending
                failures += 1
                delay = min(0.1 * 2**failures, 5.0)
                log.warning("settling %d run(s) failed (%s); retrying in %.1fs", len(batch), err, delay)
                await asyncio.sleep(delay)
                continue
            for settlement in batch:
                self._held.pop(settlement.lease.run_id, None)
            if lost:
                log.warning(
                    "%d outcome(s) refused: the lease was lost (expired or cancelled): %s",
                    len(lost),
                    ", ".join(lost[:5]),
                )

    async def _maintain_forever(self) -> None:
        maintenance = self.maintenance
        while True:
            pause = self.options.rescue_interval
            try:
                await self._store(maintenance.tick)
                pause = maintenance.pause(pause)  # sooner when a cron tick is due
                if maintenance.cron_started:
                    self._wake.set()
            except StepwellError as err:
                log.warning("maintenance pass failed: %s", err)
            except Exception:  # a bug must not silently end rescue and retention for this worker's life
                log.exception("maintenance pass crashed; trying again next interval")
            await asyncio.sleep(pause)

    async def _shutdown(self, background: list[asyncio.Task[None]]) -> None:
        tasks = list(self._tasks.values())
        if tasks:
            log.info("waiting up to %.0fs for %d in-flight run(s)", self.options.shutdown_timeout, len(tasks))
            _, unfinished = await asyncio.wait(tasks, timeout=self.options.shutdown_timeout)
            for task in unfinished:
                task.cancel()
        with contextlib.suppress(StepwellError):
            await asyncio.wait_for(self._flush(), timeout=max(self.options.shutdown_timeout, 1.0))
        unsettled = [lease for run_id, lease in self._held.items()]
        if unsettled:
            with contextlib.suppress(StepwellError):
                released = await self._store(self.store.release_runs, unsettled)
                log.info("released %d lease(s) for other workers", released)
            self._held.clear()
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)


async def _wait_any(stop: asyncio.Event, wake: asyncio.Event | None, timeout: float) -> None:
    waiters = [asyncio.create_task(stop.wait())]
    if wake is not None:
        waiters.append(asyncio.create_task(wake.wait()))
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
