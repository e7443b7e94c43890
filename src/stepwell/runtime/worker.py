"""The worker: claim ready runs in batches, execute them, settle outcomes in batches.

Async functions run on this event loop, sync functions on a fixed set of user threads fed from a
queue, whose outcomes come back in batches (`runtime/userthreads.py`); the store is reached
through a small executor of its own. Leases are renewed by a separate thread.

A settle that has room to claim behind it, with runs still buffered, claims in the same transaction
(`Store.settle_and_claim`): in a drain, one commit saves a batch of outcomes and fetches the next
batch of work. With the buffer empty the claim loop claims at once, overlapping the settle. Outcomes
linger (`linger`, 2 ms) for others to share their transaction, until half a claim batch is waiting.

The pipeline is bounded: a run counts against the room to claim from its claim until its outcome
is saved (buffered, running, or waiting to be settled), so bodies can never outrun settles and
memory stays flat however slow the database gets. On stop, the worker claims nothing more, gives
in-flight runs `shutdown_timeout` to finish, saves what it can within that time, then releases
the leases of everything else so another worker takes it at once.
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
from stepwell.runtime.crashpoints import crash_point
from stepwell.runtime.deadlines import LeaseDeadlines
from stepwell.runtime.engine import Engine
from stepwell.runtime.heartbeat import Heartbeat
from stepwell.runtime.maintenance import Maintenance
from stepwell.runtime.processing import process_claimed
from stepwell.runtime.userthreads import UserThreads
from stepwell.runtime.wakeup import Wakeups
from stepwell.store.base import ClaimedRun, Lease, Retention, SettledAndClaimed, Settlement

log = logging.getLogger("stepwell.worker")
T = TypeVar("T")

RELEASE_TIMEOUT = 5.0  # seconds the final release may take, after the shutdown timeout, before giving up on it


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    concurrency: int = 10
    lease: timedelta = timedelta(seconds=30)
    poll_interval: float = 0.5
    shutdown_timeout: float = 10.0
    claim_batch: int = 100
    prefetch: int | None = None  # runs claimed ahead of free slots; default: `claim_batch`, whatever the concurrency
    linger: float = 0.002  # seconds an outcome may wait for others (up to half a claim batch) to share its transaction
    maintenance: bool = True
    rescue_interval: float = 5.0
    retention: Retention = Retention()

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"concurrency: {self.concurrency} must be >= 1")
        if self.lease < timedelta(seconds=1):
            raise ValueError(f"lease: {self.lease} must be at least 1 second")
        if self.claim_batch < 1:
            raise ValueError(f"claim_batch: {self.claim_batch} must be >= 1")
        if not self.poll_interval > 0:
            raise ValueError(f"poll_interval: {self.poll_interval} must be > 0 seconds")
        if not self.shutdown_timeout >= 0:
            raise ValueError(f"shutdown_timeout: {self.shutdown_timeout} must be >= 0 seconds")
        if not self.linger >= 0:
            raise ValueError(f"linger: {self.linger} must be >= 0 seconds")
        if self.prefetch is None:
            object.__setattr__(self, "prefetch", self.claim_batch)  # claims fill up, at any concurrency
        elif self.prefetch < 0:
            raise ValueError(f"prefetch: {self.prefetch} must be >= 0")

    @property
    def capacity(self) -> int:
        """The most runs a worker holds at once: claimed, running, or waiting for their outcome to be saved."""
        return self.concurrency + (self.prefetch or 0)


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
        self._pending: list[Settlement] = []  # outcomes waiting to be settled
        self._settling = 0  # outcomes in the settle now in flight
        self._pending_since = 0.0  # the loop's time when the oldest pending outcome arrived
        self._batch_goal = max(1, self.options.claim_batch // 2)  # pending outcomes that no longer linger
        self._stop: asyncio.Event | None = None  # run()'s: once set, settles claim nothing more
        self._late_claim: asyncio.Future[list[ClaimedRun]] | None = None  # a claim still in flight at stop
        self.peak_in_flight = 0  # the most runs held at once, for tests and metrics (never above `capacity`)
        self._deadlines = LeaseDeadlines(self.options.lease)  # no user code of a run past its lease
        self._store_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="stepwell-store")
        self.user_threads = UserThreads(self.options.concurrency, name="stepwell-run")  # sync functions' bodies
        self.processed = 0
        # the functions this worker claims runs of: its app's (other apps may share the database), except
        # those its app serves by push (registered with a URL): the server's push dispatcher delivers those
        pushed = self.store.push_endpoints()
        self._serves = [name for name in engine.registry.names() if name not in pushed]
        self.maintenance = Maintenance(
            self.store,
            self.clock,
            retention=self.options.retention,
            registry=self.engine.router or self.engine.registry,
        )  # the registry's crons (every app's) when the engine routes from it

    def in_flight(self) -> int:
        """Runs held now: claimed and buffered, running, or finished with their outcome not yet saved."""
        return len(self._buffer) + len(self._tasks) + len(self._pending) + self._settling

    async def _store(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._store_pool, lambda: fn(*args, **kwargs))

    async def run(self, stop: asyncio.Event) -> None:
        """Work until `stop` is set, then shut down gracefully."""
        self._wake = asyncio.Event()
        self._settled = asyncio.Event()
        self._full = asyncio.Event()  # set when `_batch_goal` outcomes are pending: the linger ends
        self._flush_lock = asyncio.Lock()  # one settle at a time, whether the background flusher's or shutdown's
        self._claim_lock = asyncio.Lock()  # one claim at a time, the claim loop's or a settle's
        self._stop = stop
        loop = asyncio.get_running_loop()
        if self.wakeups:
            self.wakeups.register(loop, self._wake)

        def on_work() -> None:
            loop.call_soon_threadsafe(self._wake.set)

        unsubscribe = await self._store(self.store.subscribe, on_work)  # live before the first claim
        self._loop = loop
        heartbeat = Heartbeat(
            self.store, self.options.lease, lambda: list(self._held.values()), self._lost, self._deadlines
        )
        heartbeat.start()
        background = [asyncio.create_task(self._flush_forever())]
        if self.options.maintenance:
            background.append(asyncio.create_task(self._maintain_forever()))
        options = self.options
        log.info(
            "worker %s started (concurrency %d, prefetch %d, claim batch %d, linger %gs, poll %gs, lease %gs)",
            self.worker_id,
            options.concurrency,
            options.prefetch or 0,
            options.claim_batch,
            options.linger,
            options.poll_interval,
            options.lease.total_seconds(),
        )
        try:
            await self._claim_until(stop)
        finally:
            await self._shutdown(background)  # never raises: a worker always stops cleanly
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
        self.user_threads.close()  # a sync run still stuck in user code is abandoned: its lease is released

    async def run_until_idle(self, on_idle: Callable[[], bool], *, max_runs: int) -> int:
        """Work until nothing is ready and nothing is in flight, then ask `on_idle` whether time
        moved on (True: look again) or the work is done (False). For a virtual clock: the claim,
        execute and settle paths are those of run(), with a maintenance pass (rescue, fan-outs,
        run timeouts, cron) before each claim instead of on a timer. Returns the attempts executed.
        """
        self._wake, self._settled, self._full = asyncio.Event(), asyncio.Event(), asyncio.Event()
        self._flush_lock, self._claim_lock = asyncio.Lock(), asyncio.Lock()
        self._loop = asyncio.get_running_loop()
        start = self.processed
        try:
            while self.processed - start < max_runs:
                await self._store(self.maintenance.tick)
                limit = min(self.options.claim_batch, max_runs - (self.processed - start))
                claimed = await self._store(
                    self.store.claim_runs,
                    worker_id=self.worker_id,
                    limit=limit,
                    lease=self.options.lease,
                    functions=self._serves,
                )  # this app's runs only: other apps may share the database
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
        like running ones, and released at shutdown. The room to claim is what `capacity` leaves
        after every run held, outcomes not yet saved included: when settling falls behind, claiming
        waits for it (back-pressure), and a settle that frees room wakes this loop.
        """
        failures = 0
        while not stop.is_set():
            self._wake.clear()  # before claiming: a wake-up that arrives during the claim must not be lost
            self._start_buffered()
            limit = 0 if self._claim_lock.locked() else self._claim_limit()  # locked: a settle claims; it wakes us
            full_batch = False
            if limit:
                async with self._claim_lock:
                    since = self._deadlines.now()
                    try:
                        claimed = await self._claim(stop, limit)
                        if claimed is None:  # stopped while the claim was in flight: shutdown releases what it got
                            return
                        failures = 0
                    except StepwellError as err:
                        failures += 1
                        delay = min(0.1 * 2**failures, 10.0)
                        log.warning("claim failed (%s); retrying in %.1fs", err, delay)
                        claimed = None
                if claimed is None:  # the claim failed: back off outside the lock, so settles may claim
                    await _wait_any(stop, None, delay)
                    continue
                self._took(claimed, since)
                full_batch = len(claimed) == limit
            if full_batch and len(self._tasks) < self.options.concurrency:
                await asyncio.sleep(0)
                continue
            await _wait_any(stop, self._wake, self.options.poll_interval)

    def _claim_limit(self, settling: int = 0) -> int:
        """How many runs to claim now (0: none). The room is what `capacity` leaves after every run held,
        less the `settling` outcomes a settle_and_claim saves in the claim's own transaction; a claim
        is made when the buffer ran dry or half the capacity is free, so that claims stay large."""
        capacity = self.options.capacity
        room = capacity - (self.in_flight() - settling)
        if room > 0 and (not self._buffer or room >= capacity // 2):
            return min(room, self.options.claim_batch)
        return 0

    def _took(self, claimed: list[ClaimedRun], since: float) -> None:
        """Hold the runs just claimed (leased since `since`) and start what the concurrency allows."""
        self._deadlines.granted([run.run_id for run in claimed], since)
        if claimed:
            crash_point("worker.after_claim")
        for run in claimed:
            self._held[run.run_id] = run.lease
        self._buffer.extend(claimed)
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight())
        self._start_buffered()

    async def _claim(self, stop: asyncio.Event, limit: int) -> list[ClaimedRun] | None:
        """Claim up to `limit` runs; None when `stop` came first (the claim is then left to shutdown).

        A claim held up by a slow or locked database must not hold up the shutdown, yet whatever it
        claims is leased to this worker and must be released: shutdown waits for it, bounded."""
        claim = asyncio.ensure_future(
            self._store(
                self.store.claim_runs,
                worker_id=self.worker_id,
                limit=limit,
                lease=self.options.lease,
                functions=self._serves,
            )
        )
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait([claim, stopped], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if claim.done():
            return claim.result()
        claim.add_done_callback(lambda f: f.cancelled() or f.exception())  # a failure then is no one's business
        self._late_claim = claim
        return None

    def _start_buffered(self) -> None:
        while self._buffer and len(self._tasks) < self.options.concurrency:
            claimed = self._buffer.popleft()
            if not self._deadlines.alive(claimed.run_id):  # paused past its lease: maybe done elsewhere
                self._drop(claimed.run_id)
                continue
            self._tasks[claimed.run_id] = asyncio.create_task(self._process(claimed))

    def _drop(self, run_id: str) -> None:
        """Forget a run whose lease is gone without running it; its lease expires in the store."""
        self._held.pop(run_id, None)
        self._deadlines.forget(run_id)
        log.warning("run %s not started: its lease ran out while it waited in the buffer", run_id)

    async def _process(self, claimed: ClaimedRun) -> None:
        run_id = claimed.run_id
        try:
            settlement = await process_claimed(
                self.engine, claimed, self.user_threads.call, alive=lambda: self._deadlines.alive(run_id)
            )
        except Exception:  # a bug of ours: keep the worker alive, the lease will expire and rescue
            log.exception("run %s could not be processed", claimed.run_id)
            settlement = None
        finally:
            self._tasks.pop(claimed.run_id, None)
            self._wake.set()
        self.processed += 1
        if settlement is None:
            self._held.pop(claimed.run_id, None)
            self._deadlines.forget(claimed.run_id)
        else:
            if not self._pending:
                self._pending_since = asyncio.get_running_loop().time()
            self._pending.append(settlement)
            self._settled.set()
            if len(self._pending) >= self._batch_goal:
                self._full.set()

    def _lost(self, run_ids: list[str]) -> None:
        """Called on the heartbeat thread: expire the deadlines at once (running attempts stop at
        their next step), and drop the buffered ones on the loop, which owns the buffer."""
        self._deadlines.lost(run_ids)
        lost = [run_id for run_id in run_ids if self._held.pop(run_id, None) is not None]
        if lost:  # a run settled while the heartbeat was in flight is not lost
            log.warning("lost the lease of %d run(s): %s", len(lost), ", ".join(lost[:5]))
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing is buffered any more
                self._loop.call_soon_threadsafe(self._forget_buffered, set(lost))

    def _forget_buffered(self, run_ids: set[str]) -> None:
        dropped = [claimed.run_id for claimed in self._buffer if claimed.run_id in run_ids]
        if dropped:
            self._buffer = deque(claimed for claimed in self._buffer if claimed.run_id not in run_ids)
            for run_id in dropped:  # running ones keep their expired deadline until their attempt ends
                self._deadlines.forget(run_id)

    async def _flush_forever(self) -> None:
        while True:
            await self._settled.wait()
            await self._linger()
            self._settled.clear()
            await self._flush(claim=True)

    async def _linger(self) -> None:
        """Let outcomes finishing close together share one transaction: wait until the oldest pending
        outcome is `linger` old, or until half a claim batch is pending, whichever comes first.

        Whatever the concurrency: a drain then settles (and claims) in batches of about half a claim
        batch, and a lone outcome waits `linger` at most. A settle in flight holds up the next one
        anyway, so under load outcomes gather without lingering at all."""
        linger = self.options.linger
        if not linger:
            return
        loop = asyncio.get_running_loop()
        while len(self._pending) < self._batch_goal:
            left = self._pending_since + linger - loop.time()
            if left <= 0:
                return
            self._full.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), left)

    async def _flush(self, *, claim: bool = False) -> None:
        """Settle every pending outcome, one batch at a time; cancelled, the batch in flight stays held.
        `claim` (the background flusher): settle one batch, and claim in the same transaction when there
        is room (until stop is set); outcomes that came meanwhile linger for the next round."""
        async with self._flush_lock:
            await self._flush_pending(claim)

    async def _flush_pending(self, claim: bool) -> None:
        failures = 0
        while self._pending:
            batch, self._pending = self._pending, []
            self._settling = len(batch)
            stopping = self._stop is None or self._stop.is_set()
            # with an empty buffer the claim loop claims now, on the other store connection: a claim of
            # ours would make it wait for this settle (a tuned drain lost ~15% so); with runs buffered,
            # claiming here saves a transaction and delays nothing
            combine = claim and not stopping and bool(self._buffer) and not self._claim_lock.locked()
            limit = self._claim_limit(len(batch)) if combine else 0
            claimed: list[ClaimedRun] = []
            since = self._deadlines.now()
            try:
                crash_point("worker.before_settle")
                if limit:
                    async with self._claim_lock:
                        done = await self._settle_and_claim(batch, limit)
                    lost, claimed = done.refused, done.claimed
                else:
                    lost = await self._store(self.store.settle_runs, batch)
                crash_point("worker.after_settle")
            except StepwellError as err:
                self._pending = batch + self._pending
                failures += 1
                delay = min(0.1 * 2**failures, 5.0)
                log.warning("settling %d run(s) failed (%s); retrying in %.1fs", len(batch), err, delay)
                await asyncio.sleep(delay)
                continue
            finally:
                self._settling = 0
            for settlement in batch:
                self._held.pop(settlement.lease.run_id, None)
                self._deadlines.forget(settlement.lease.run_id)
            if claimed:  # after the settled runs are let go: a run retried at once may be among them
                self._took(claimed, since)
            self._wake.set()  # room to claim again
            if lost:
                log.warning(
                    "%d outcome(s) refused: the lease was lost (expired or cancelled): %s",
                    len(lost),
                    ", ".join(lost[:5]),
                )
            if claim:
                return

    async def _settle_and_claim(self, batch: list[Settlement], limit: int) -> SettledAndClaimed:
        """settle_and_claim on a store thread. Cancelled (shutdown), the call carries on: what it claims is
        released at shutdown, as a claim loop's claim still in flight is (`_late_claim`)."""
        call = asyncio.ensure_future(
            self._store(
                self.store.settle_and_claim,
                batch,
                worker_id=self.worker_id,
                limit=limit,
                lease=self.options.lease,
                functions=self._serves,
            )
        )
        try:
            return await asyncio.shield(call)
        except asyncio.CancelledError:
            self._late_claim = asyncio.ensure_future(_claimed_by(call))
            self._late_claim.add_done_callback(lambda f: f.cancelled() or f.exception())
            raise

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
        """Finish, save or release everything held: `shutdown_timeout` (at least 1 s to save), then a bounded release.

        Never raises: a database that is slow or away makes the worker give up on saving and on
        releasing (the leases then expire and rescue takes the runs), never die with a traceback."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.shutdown_timeout
        try:
            await self._finish_running(self.options.shutdown_timeout)
            waiting = len(self._pending) + self._settling
            if waiting:
                log.info("saving %d outcome(s) before stopping", waiting)
            # at least a second to save outcomes that came at the deadline: saved, they need not run again
            await asyncio.wait_for(self._flush(), timeout=max(deadline - loop.time(), 1.0))
        except TimeoutError:
            log.warning("shutdown timeout: %d outcome(s) not saved; releasing their runs", self.in_flight())
        except Exception:  # a bug of ours must not skip the release below
            log.exception("saving outcomes at shutdown crashed; releasing their runs")
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await self._release_held()

    async def _finish_running(self, timeout: float) -> None:
        tasks = list(self._tasks.values())
        if not tasks:
            return
        log.info("waiting up to %.1fs for %d in-flight run(s)", timeout, len(tasks))
        _, unfinished = await asyncio.wait(tasks, timeout=timeout)
        for task in unfinished:
            task.cancel()
        if unfinished:  # let them unwind; one that swallows its cancellation is not waited for
            await asyncio.wait(unfinished, timeout=1.0)

    async def _release_held(self) -> None:
        """Release the lease of every run held and not settled (a claim still in flight included).

        Best effort and bounded by RELEASE_TIMEOUT: a release already settled or lost is refused by
        its lease token, so releasing a run whose settle is still in flight is harmless either way.
        Runs on a thread of its own: the store threads may all be stuck in calls that timed out."""
        releaser = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stepwell-release")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RELEASE_TIMEOUT
        try:
            if self._late_claim is not None:
                try:
                    late = await asyncio.wait_for(asyncio.shield(self._late_claim), timeout=deadline - loop.time())
                    self._held.update((run.run_id, run.lease) for run in late)
                except StepwellError:
                    pass  # it claimed nothing
                except TimeoutError:
                    log.warning("a claim still in flight at shutdown; what it claims returns when its lease expires")
            self._buffer.clear()
            unsettled = list(self._held.values())
            if not unsettled:
                return
            try:
                released = await asyncio.wait_for(
                    loop.run_in_executor(releaser, self.store.release_runs, unsettled),
                    timeout=max(deadline - loop.time(), 0.1),
                )
                log.info("released %d lease(s) for other workers", released)
            except (StepwellError, TimeoutError) as err:
                log.warning(
                    "could not release %d lease(s) (%s); they return when their lease expires",
                    len(unsettled),
                    _one_line(err) if str(err) else "timed out",
                )
            except Exception:  # a bug of ours: log it, the process must still stop cleanly
                log.exception("releasing %d lease(s) at shutdown crashed", len(unsettled))
            self._held.clear()
        finally:
            releaser.shutdown(wait=False)


async def _claimed_by(call: asyncio.Future[SettledAndClaimed]) -> list[ClaimedRun]:
    return (await call).claimed


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


async def _wait_any(stop: asyncio.Event, wake: asyncio.Event | None, timeout: float) -> None:
    waiters = [asyncio.create_task(stop.wait())]
    if wake is not None:
        waiters.append(asyncio.create_task(wake.wait()))
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
