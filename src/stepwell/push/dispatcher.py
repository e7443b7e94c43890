"""The push dispatcher: claim ready runs of pushed functions, deliver each to its endpoint, settle.

It is a worker whose "user code" is an HTTP exchange: the same fenced leases (claimed with the
pushed functions' names, renewed by the same heartbeat while the request is in flight), the same
store verbs for each step, the same `outcomes.decide`. Per endpoint: a concurrency limit (runs
are claimed only while their endpoint has room) and a circuit breaker (an endpoint that keeps
failing is not claimed for until its cooldown ends; the open circuit is written to the store so
that every process can tell why those runs wait). Like the pull worker it claims in batches into
a small buffer (`prefetch`), checks each run's local lease deadline before every request, and
settles outcomes in batches with a short linger. `http://` endpoints go through the lean
keep-alive HTTP/1.1 client (`push/http1.py`); `https://` ones through one `httpx.AsyncClient`,
HTTP/2 when `h2` is installed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

import httpx

from stepwell.clock import Clock
from stepwell.errors import LeaseLost, StepwellError
from stepwell.model.ids import new_token
from stepwell.model.retry import RetryPolicy
from stepwell.observe import tracing
from stepwell.push.breaker import Breaker
from stepwell.push.delivery import (
    ChildrenTooLarge,
    EndpointFailed,
    EndpointUnreachable,
    Exchange,
    Transport,
    settle_response,
    too_large,
    transport_failure,
)
from stepwell.push.guard import Guard
from stepwell.push.http1 import Http1Client
from stepwell.push.signing import Signer, Verifier
from stepwell.runtime.deadlines import LeaseDeadlines
from stepwell.runtime.engine import Engine
from stepwell.runtime.heartbeat import Heartbeat
from stepwell.runtime.registry import Registry
from stepwell.runtime.routing import Router
from stepwell.store.base import ClaimedRun, Lease, Release, Settlement, Store

log = logging.getLogger("stepwell.push")
T = TypeVar("T")
ENDPOINTS_MAX_AGE = 1.0  # seconds: a newly registered endpoint is dispatched to within this
LINGER = 0.002  # seconds a small batch of outcomes waits for others to share its transaction


def http2_available() -> bool:
    try:
        import h2  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class PushOptions:
    signing_keys: tuple[bytes, ...] = ()
    dev: bool = False  # no keys: unsigned requests, loopback endpoints only
    concurrency: int = 100  # runs in flight across every endpoint
    per_endpoint: int = 16  # runs in flight per endpoint URL
    request_timeout: float = 30.0  # seconds for one request, answer included
    lease: timedelta = timedelta(seconds=30)
    claim_batch: int = 50
    prefetch: int | None = None  # runs claimed ahead (at most per_endpoint per endpoint); default: concurrency
    poll_interval: float = 0.5
    max_response_bytes: int = 16 * 1024 * 1024
    breaker_threshold: int = 5
    breaker_cooldown: timedelta = timedelta(seconds=30)
    allow_private: bool = False
    allow_loopback: bool = False
    http2: bool = field(default_factory=http2_available)
    max_output_bytes: int = 4 * 1024 * 1024
    max_event_bytes: int = 1024 * 1024

    def __post_init__(self) -> None:
        if not self.signing_keys and not self.dev:
            raise StepwellError(
                "push dispatcher: no signing key configured (STEPWELL_SIGNING_KEY); "
                "refusing to call endpoints unsigned outside development mode"
            )
        for name in ("concurrency", "per_endpoint", "claim_batch", "max_response_bytes", "breaker_threshold"):
            if getattr(self, name) < 1:
                raise StepwellError(f"push dispatcher: {name} must be >= 1")
        if not self.request_timeout > 0:
            raise StepwellError("push dispatcher: request_timeout must be > 0 seconds")
        if self.lease < timedelta(seconds=1):
            raise StepwellError(f"push dispatcher: lease must be at least 1 second, got {self.lease.total_seconds():g}")
        if self.prefetch is None:
            object.__setattr__(self, "prefetch", self.concurrency)
        elif self.prefetch < 0:
            raise StepwellError("push dispatcher: prefetch must be >= 0")

    @property
    def capacity(self) -> int:
        """The most runs held at once: buffered, being pushed, or waiting for their outcome to be saved."""
        return self.concurrency + (self.prefetch or 0)


class Dispatcher:
    def __init__(self, store: Store, clock: Clock, router: Router, options: PushOptions) -> None:
        self.store, self.clock, self.router, self.options = store, clock, router, options
        self.engine = Engine(Registry(), store, clock, options.max_event_bytes, options.max_output_bytes, router=router)
        self.worker_id = f"push:{socket.gethostname()}:{os.getpid()}:{new_token()[:8]}"
        self.breaker = Breaker(options.breaker_threshold, options.breaker_cooldown)
        self.guard = Guard(allow_private=options.allow_private, allow_loopback=options.allow_loopback or options.dev)
        self._held: dict[str, Lease] = {}  # claimed and not yet settled
        self._buffer: deque[tuple[ClaimedRun, str]] = deque()  # claimed ahead, not pushed yet, with their URL
        self._tasks: set[asyncio.Task[None]] = set()
        self._busy: Counter[str] = Counter()  # runs being pushed per endpoint URL
        self._buffered: Counter[str] = Counter()  # runs buffered per endpoint URL
        self._deadlines = LeaseDeadlines(options.lease)  # no request of a run past its local lease deadline
        self._endpoints: dict[str, str] = {}  # function -> URL, as last read
        self._endpoints_read_at = float("-inf")
        self._pending: list[Settlement] = []  # outcomes waiting to be settled
        self._settling = 0  # outcomes in the settle now in flight
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="stepwell-push-store")
        self.delivered = 0  # attempts finished: settled, or dropped with a lost lease

    def in_flight(self) -> int:
        """Runs held: buffered, being pushed, or pushed with their outcome not yet saved (until it is)."""
        return len(self._buffer) + len(self._tasks) + len(self._pending) + self._settling

    async def _store(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, lambda: fn(*args, **kwargs))

    def _policy(self, function: str) -> RetryPolicy:
        definition = self.router.table(max_age=5.0).served.get(function)
        return RetryPolicy() if definition is None else definition.retry

    async def run(self, stop: asyncio.Event) -> None:
        options = self.options
        self._wake = asyncio.Event()
        self._settled = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        loop = asyncio.get_running_loop()

        def on_work() -> None:
            loop.call_soon_threadsafe(self._wake.set)

        unsubscribe = await self._store(self.store.subscribe, on_work)  # live before the first claim
        heartbeat = Heartbeat(self.store, options.lease, lambda: list(self._held.values()), self._lost, self._deadlines)
        heartbeat.start()
        limits = httpx.Limits(max_connections=options.concurrency, max_keepalive_connections=options.concurrency)
        timeout = httpx.Timeout(options.request_timeout, connect=min(5.0, options.request_timeout))
        flusher = asyncio.create_task(self._flush_forever())
        async with httpx.AsyncClient(http2=options.http2, limits=limits, timeout=timeout, trust_env=False) as client:
            verifier = Verifier(options.signing_keys, allow_unsigned=options.dev and not options.signing_keys)
            plain = Http1Client(max_idle=options.concurrency, connect_timeout=min(5.0, options.request_timeout))
            self.transport = Transport(
                client, self.guard, Signer(options.signing_keys), verifier, options.max_response_bytes,
                options.request_timeout, plain,
            )  # fmt: skip
            log.info("push dispatcher %s started (http2 %s)", self.worker_id, options.http2)
            try:
                await self._claim_until(stop)
            finally:
                self._buffer.clear()  # never pushed: released below with everything else held
                if self._tasks:
                    await asyncio.wait(self._tasks, timeout=options.request_timeout)
                try:  # save what finished (after a settle in flight); what cannot be saved in time is released
                    await asyncio.wait_for(self._flush(retry=False), timeout=options.request_timeout)
                except TimeoutError:
                    log.warning("push dispatcher: %d outcome(s) not saved at stop", len(self._pending))
                flusher.cancel()
                await asyncio.gather(flusher, return_exceptions=True)
                heartbeat.stop()
                if unsubscribe is not None:
                    unsubscribe()
                plain.close()
                if self._held:
                    await self._store(self.store.release_runs, list(self._held.values()))
                self._pool.shutdown(wait=False)

    async def _claim_until(self, stop: asyncio.Event) -> None:
        """Keep up to `concurrency` runs being pushed, from a small buffer refilled in batches (up to
        `prefetch` ahead). Outcomes waiting to be saved do not take the room of runs to push (a request
        takes far longer than a settle), but `capacity` of them stop claiming until a settle, which
        wakes this loop: pushing never outruns settling for long, and memory stays bounded."""
        capacity = self.options.capacity
        while not stop.is_set():
            self._wake.clear()  # before claiming: a wake-up that arrives during the claim must not be lost
            claimed: list[ClaimedRun] = []
            limit = 0
            room = capacity - len(self._buffer) - len(self._tasks)
            saving = len(self._pending) + self._settling  # outcomes not saved yet: back-pressure when many
            if room > 0 and saving < capacity and (not self._buffer or room >= capacity // 2):
                since = self._deadlines.now()
                try:
                    limit, claimed = await self._claim(room)
                except StepwellError as error:
                    log.warning("push claim failed: %s", error)
                self._deadlines.granted([run.run_id for run in claimed], since)
            for run in claimed:
                url = self._endpoints.get(run.function)
                self._held[run.run_id] = run.lease
                if url is None:  # unregistered between the read and the claim: give it back
                    self._pending.append(Release(run.lease))
                    self._settled.set()
                    continue
                self._buffer.append((run, url))
                self._buffered[url] += 1
            self._start_buffered()
            if claimed and len(claimed) == limit and len(self._buffer) + len(self._tasks) < capacity:
                await asyncio.sleep(0)
                continue
            await _wait_any(stop, self._wake, self.options.poll_interval)

    async def _claim(self, room: int) -> tuple[int, list[ClaimedRun]]:
        """(the limit asked for, the runs claimed) of the functions whose endpoint has room."""
        if not self._endpoints or self.clock.monotonic() - self._endpoints_read_at > ENDPOINTS_MAX_AGE:
            self._endpoints = await self._store(self.store.push_endpoints)
            self._endpoints_read_at = self.clock.monotonic()
        now = self.clock.now()
        rooms = {url: self._room(url, now) for url in set(self._endpoints.values())}
        functions = [name for name, url in self._endpoints.items() if rooms[url] > 0]
        if not functions:
            return 0, []
        limit = max(min(room, self.options.claim_batch, *(rooms[self._endpoints[name]] for name in functions)), 1)
        claimed = await self._store(
            self.store.claim_runs, worker_id=self.worker_id, limit=limit, lease=self.options.lease,
            functions=functions,
        )  # fmt: skip
        return limit, claimed

    def _room(self, url: str, now: datetime) -> int:
        """Runs of this endpoint that may be claimed now: none while its circuit is open, one to probe it;
        else `per_endpoint` being pushed and as many again (at most `prefetch`) buffered."""
        if not self.breaker.allows(url, now):
            return 0
        per_endpoint = self.options.per_endpoint
        ahead = min(self.options.prefetch or 0, per_endpoint)
        limit = 1 if self.breaker.open_until(url) is not None else per_endpoint + ahead
        return max(limit - self._busy[url] - self._buffered[url], 0)

    def _start_buffered(self) -> None:
        """Push buffered runs, in claim order, while there is room overall and at their endpoint."""
        if not self._buffer:
            return
        kept: deque[tuple[ClaimedRun, str]] = deque()
        while self._buffer:
            run, url = self._buffer.popleft()
            if len(self._tasks) >= self.options.concurrency or self._busy[url] >= self.options.per_endpoint:
                kept.append((run, url))
                continue
            self._buffered[url] -= 1
            if run.run_id not in self._held or not self._deadlines.alive(run.run_id):
                self._drop(run.run_id)  # lost, or paused past its lease while buffered: maybe pushed elsewhere
                continue
            now = self.clock.now()
            if not self.breaker.allows(url, now):  # the circuit opened while it waited: back to the queue
                self._pending.append(Release(run.lease))
                self._settled.set()
                continue
            self._busy[url] += 1
            self.breaker.started(url, now)
            task = asyncio.create_task(self._deliver(run, url))
            self._tasks.add(task)
            task.add_done_callback(self._finished)
        self._buffer = kept

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._start_buffered()  # room now, at its endpoint and overall

    def _drop(self, run_id: str) -> None:
        """Forget a run whose lease is gone without pushing it; its lease expires in the store."""
        self._held.pop(run_id, None)
        self._deadlines.forget(run_id)
        log.warning("run %s not pushed: its lease ran out while it waited in the buffer", run_id)

    async def _deliver(self, claimed: ClaimedRun, url: str) -> None:
        policy = self._policy(claimed.function)
        exchange = Exchange(claimed)
        trace_headers = tracing.push_headers(claimed)  # decided on the claim: every checkpoint's request alike
        settlement: Settlement | None = None
        try:
            while True:
                if not self._deadlines.alive(claimed.run_id):  # no request past the local lease deadline
                    raise LeaseLost(f"run {claimed.run_id}: local lease deadline passed")
                if exchange.needs_store():
                    body = await self._store(exchange.request, self.engine)
                else:  # no fan-out counts to read: no thread hop
                    body = exchange.request(self.engine)
                try:
                    response = await self.transport.post(url, body, claimed.run_id, self.clock.now(), trace_headers)
                except (EndpointUnreachable, EndpointFailed) as error:
                    log.warning("run %s: %s", claimed.run_id, error)
                    await self._endpoint_failed(url)
                    settlement = transport_failure(exchange.claimed, error, policy)
                    break
                except StepwellError as error:  # the SSRF guard, a bad URL: the endpoint will not do
                    log.warning("run %s: %s", claimed.run_id, error)
                    settlement = transport_failure(exchange.claimed, EndpointFailed(str(error)), policy)
                    break
                await self._endpoint_ok(url)
                try:
                    if exchange.writes(response):
                        wake, again = await self._store(exchange.store, self.engine, response)
                    else:  # nothing to write (a final answer without ops): no thread hop
                        wake, again = exchange.store(self.engine, response)
                except ChildrenTooLarge as error:
                    settlement = too_large(exchange.claimed, error, policy)
                    break
                except EndpointFailed as error:  # an answer that breaks the protocol
                    log.warning("run %s: %s", claimed.run_id, error)
                    settlement = transport_failure(exchange.claimed, error, policy)
                    break
                if not again:
                    settlement = settle_response(
                        exchange.claimed, response, wake, policy, self.options.max_output_bytes
                    )
                    break
        except LeaseLost:
            log.warning("run %s: lease lost while pushing; another claim owns it", claimed.run_id)
            settlement = None
        except Exception:
            log.exception("run %s could not be pushed", claimed.run_id)
            settlement = None  # the lease expires and rescue requeues the run
        finally:
            self._busy[url] -= 1
        if settlement is None:
            self._held.pop(claimed.run_id, None)
            self._deadlines.forget(claimed.run_id)
            self.delivered += 1
            self._wake.set()
        else:
            self._pending.append(settlement)  # counted in flight until saved
            self._settled.set()

    async def _flush_forever(self) -> None:
        while True:
            await self._settled.wait()
            if LINGER and len(self._pending) < self.options.concurrency // 2:
                await asyncio.sleep(LINGER)  # let outcomes finishing together share one transaction
            self._settled.clear()
            await self._flush()

    async def _flush(self, *, retry: bool = True) -> None:
        """Settle every pending outcome, a batch per transaction; a failed settle is tried again (backoff)."""
        async with self._flush_lock:
            failures = 0
            while self._pending:
                batch, self._pending = self._pending, []
                self._settling = len(batch)
                try:
                    lost = await self._store(self.store.settle_runs, batch)
                except StepwellError as error:
                    self._pending = batch + self._pending
                    failures += 1
                    if not retry:
                        log.warning("settling %d run(s) failed (%s); their leases will expire", len(batch), error)
                        return
                    delay = min(0.1 * 2**failures, 5.0)
                    log.warning("settling %d run(s) failed (%s); retrying in %.1fs", len(batch), error, delay)
                    await asyncio.sleep(delay)
                    continue
                finally:
                    self._settling = 0
                if lost:
                    log.warning("%d outcome(s) refused: the lease was lost: %s", len(lost), ", ".join(lost[:5]))
                for done in batch:
                    self._held.pop(done.lease.run_id, None)
                    self._deadlines.forget(done.lease.run_id)
                self.delivered += len(batch)  # attempts pushed and settled (or refused)
                self._wake.set()  # room to claim again

    async def _endpoint_failed(self, url: str) -> None:
        until = self.breaker.failed(url, self.clock.now())
        if until is not None:
            log.warning("endpoint %s: circuit open until %s", url, until.isoformat())
            await self._store(self.store.set_push_circuit, url, until)

    async def _endpoint_ok(self, url: str) -> None:
        if self.breaker.succeeded(url):
            log.info("endpoint %s: circuit closed", url)
            await self._store(self.store.set_push_circuit, url, None)

    def _lost(self, run_ids: list[str]) -> None:
        """On the heartbeat thread: the deadlines expire at once (no further request of those runs)."""
        self._deadlines.lost(run_ids)
        for run_id in run_ids:
            self._held.pop(run_id, None)


async def _wait_any(stop: asyncio.Event, wake: asyncio.Event, timeout: float) -> None:
    waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(wake.wait())]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
