"""The push dispatcher: claim ready runs of pushed functions, deliver each to its endpoint, settle.

It is a worker whose "user code" is an HTTP exchange: the same fenced leases (claimed with the
pushed functions' names, renewed by the same heartbeat while the request is in flight), the same
store verbs for each step, the same `outcomes.decide`. Per endpoint: a concurrency limit (runs
are claimed only while their endpoint has room) and a circuit breaker (an endpoint that keeps
failing is not claimed for until its cooldown ends; the open circuit is written to the store so
that every process can tell why those runs wait). One `httpx.AsyncClient` keeps connections
alive per endpoint, HTTP/2 when `h2` is installed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections import Counter
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
from stepwell.push.signing import Signer, Verifier
from stepwell.runtime.engine import Engine
from stepwell.runtime.heartbeat import Heartbeat
from stepwell.runtime.registry import Registry
from stepwell.runtime.routing import Router
from stepwell.store.base import ClaimedRun, Lease, Release, Settlement, Store

log = logging.getLogger("stepwell.push")
T = TypeVar("T")
ENDPOINTS_MAX_AGE = 1.0  # seconds: a newly registered endpoint is dispatched to within this


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


class Dispatcher:
    def __init__(self, store: Store, clock: Clock, router: Router, options: PushOptions) -> None:
        self.store, self.clock, self.router, self.options = store, clock, router, options
        self.engine = Engine(Registry(), store, clock, options.max_event_bytes, options.max_output_bytes, router=router)
        self.worker_id = f"push:{socket.gethostname()}:{os.getpid()}:{new_token()[:8]}"
        self.breaker = Breaker(options.breaker_threshold, options.breaker_cooldown)
        self.guard = Guard(allow_private=options.allow_private, allow_loopback=options.allow_loopback or options.dev)
        self._held: dict[str, Lease] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._busy: Counter[str] = Counter()  # runs in flight per endpoint URL
        self._endpoints: dict[str, str] = {}  # function -> URL, as last read
        self._endpoints_read_at = float("-inf")
        self._pending: list[Settlement] = []
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="stepwell-push-store")
        self.delivered = 0

    async def _store(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, lambda: fn(*args, **kwargs))

    def _policy(self, function: str) -> RetryPolicy:
        definition = self.router.table(max_age=5.0).served.get(function)
        return RetryPolicy() if definition is None else definition.retry

    async def run(self, stop: asyncio.Event) -> None:
        options = self.options
        self._wake = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        loop = asyncio.get_running_loop()

        def on_work() -> None:
            loop.call_soon_threadsafe(self._wake.set)

        unsubscribe = await self._store(self.store.subscribe, on_work)  # live before the first claim
        heartbeat = Heartbeat(self.store, options.lease, lambda: list(self._held.values()), self._lost)
        heartbeat.start()
        limits = httpx.Limits(max_connections=options.concurrency, max_keepalive_connections=options.concurrency)
        timeout = httpx.Timeout(options.request_timeout, connect=min(5.0, options.request_timeout))
        async with httpx.AsyncClient(http2=options.http2, limits=limits, timeout=timeout, trust_env=False) as client:
            verifier = Verifier(options.signing_keys, allow_unsigned=options.dev and not options.signing_keys)
            self.transport = Transport(
                client, self.guard, Signer(options.signing_keys), verifier, options.max_response_bytes
            )
            log.info("push dispatcher %s started (http2 %s)", self.worker_id, options.http2)
            try:
                await self._claim_until(stop)
            finally:
                if self._tasks:
                    await asyncio.wait(self._tasks, timeout=options.request_timeout)
                heartbeat.stop()
                if unsubscribe is not None:
                    unsubscribe()
                if self._held:
                    await self._store(self.store.release_runs, list(self._held.values()))
                self._pool.shutdown(wait=False)

    async def _claim_until(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._wake.clear()
            claimed: list[ClaimedRun] = []
            try:
                claimed = await self._claim()
            except StepwellError as error:
                log.warning("push claim failed: %s", error)
            for run in claimed:
                url = self._endpoints.get(run.function)
                self._held[run.run_id] = run.lease
                if url is None:  # unregistered between the read and the claim: give it back
                    await self._settle(Release(run.lease))
                    continue
                self._busy[url] += 1
                self.breaker.started(url, self.clock.now())
                task = asyncio.create_task(self._deliver(run, url))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            if claimed and len(self._tasks) < self.options.concurrency:
                continue
            await _wait_any(stop, self._wake, self.options.poll_interval)

    async def _claim(self) -> list[ClaimedRun]:
        room = self.options.concurrency - len(self._tasks)
        if room <= 0 or (self._tasks and room < min(self.options.concurrency, self.options.claim_batch) // 2):
            return []  # claim in batches, not one run per finished run
        if not self._endpoints or self.clock.monotonic() - self._endpoints_read_at > ENDPOINTS_MAX_AGE:
            self._endpoints = await self._store(self.store.push_endpoints)
            self._endpoints_read_at = self.clock.monotonic()
        now = self.clock.now()
        rooms = {url: self._room(url, now) for url in set(self._endpoints.values())}
        functions = [name for name, url in self._endpoints.items() if rooms[url] > 0]
        if not functions:
            return []
        room = min(room, self.options.claim_batch, *(rooms[self._endpoints[name]] for name in functions))
        return await self._store(
            self.store.claim_runs, worker_id=self.worker_id, limit=max(room, 1), lease=self.options.lease,
            functions=functions,
        )  # fmt: skip

    def _room(self, url: str, now: datetime) -> int:
        """Runs of this endpoint that may be claimed now: none while its circuit is open, one to probe it."""
        if not self.breaker.allows(url, now):
            return 0
        limit = 1 if self.breaker.open_until(url) is not None else self.options.per_endpoint
        return max(limit - self._busy[url], 0)

    async def _deliver(self, claimed: ClaimedRun, url: str) -> None:
        policy = self._policy(claimed.function)
        exchange = Exchange(claimed)
        settlement: Settlement | None = None
        try:
            while True:
                if exchange.needs_store():
                    body = await self._store(exchange.request, self.engine)
                else:  # no fan-out counts to read: no thread hop
                    body = exchange.request(self.engine)
                try:
                    response = await self.transport.post(url, body, claimed.run_id, self.clock.now())
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
                    wake, again = await self._store(exchange.store, self.engine, response)
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
            self._held.pop(claimed.run_id, None)
            settlement = None
        except Exception:
            log.exception("run %s could not be pushed", claimed.run_id)
            settlement = None  # the lease expires and rescue requeues the run
            self._held.pop(claimed.run_id, None)
        finally:
            self._busy[url] -= 1
            self._wake.set()
        if settlement is not None:
            await self._settle(settlement)
        self.delivered += 1

    async def _settle(self, settlement: Settlement) -> None:
        """Group commit: outcomes that finish while a settle is in flight share the next transaction.
        Returns once this outcome's transaction has ended."""
        self._pending.append(settlement)
        async with self._flush_lock:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    lost = await self._store(self.store.settle_runs, batch)
                    if lost:
                        log.warning("%d outcome(s) refused: the lease was lost: %s", len(lost), ", ".join(lost[:5]))
                except StepwellError as error:
                    log.warning("settling %d run(s) failed (%s); their leases will expire", len(batch), error)
                for done in batch:
                    self._held.pop(done.lease.run_id, None)

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
        for run_id in run_ids:
            self._held.pop(run_id, None)


async def _wait_any(stop: asyncio.Event, wake: asyncio.Event, timeout: float) -> None:
    waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(wake.wait())]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
