"""Sync user code on a fixed set of threads fed from one queue, outcomes handed back in batches.

`loop.run_in_executor` costs, per call, a `ThreadPoolExecutor.submit`, a concurrent future chained
to an asyncio one, and a `call_soon_threadsafe` (a write to the loop's self-pipe) to hand the
result back: in a sync drain that hop was the largest self-time entry among the GIL-holding
samples (docs/benchmarks.md, "What is slow, and why", item 2). Here a call is one queue `put`
and one asyncio future; a finished call appends its result to a list, and only the call that
finds the list empty wakes the loop, which then resolves every result gathered by then. Calls
that end together share one wake-up.

Semantics are those of the pool it replaces: at most `size` calls run at once, each on one
thread from start to end (a sync function's steps run on the thread of its body); a call whose
awaiting task was cancelled before it started never starts, and one cancelled while it runs is
abandoned: it runs to its end on its thread, and its result is dropped. The threads are daemon
threads, so a call stuck in user code never holds the process at exit (its run's lease was
released by the worker's shutdown).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(slots=True)
class _Call:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    fn: Callable[..., Any]
    args: tuple[Any, ...]


@dataclass(slots=True)
class _Ended:
    future: asyncio.Future[Any]
    result: Any = None
    error: BaseException | None = None


class UserThreads:
    """Up to `size` threads, started as calls need them, that run sync calls for event loops.

    Thread-safe where it must be: `call` and `close` run on a loop, the threads hand results
    back through a lock-guarded list per loop."""

    def __init__(self, size: int, *, name: str = "stepwell-run") -> None:
        if size < 1:
            raise ValueError(f"size: {size} must be >= 1")
        self.size = size
        self.name = name
        self.wakeups = 0  # times a loop was woken to take results: calls ending together share one
        self.handed_back = 0  # results handed back to their loop (cancelled calls' results excluded)
        self._queue: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0  # threads done with their last call (waiting, or about to wait, for the next); under _lock
        self._ended: dict[asyncio.AbstractEventLoop, list[_Ended]] = {}
        self._lock = threading.Lock()
        self._closed = False

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` on one of the threads; its result, or its exception raised here."""
        if self._closed:
            raise RuntimeError("user threads closed: no new calls after the worker stopped")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Call(loop, future, fn, args))
        self._ensure_thread()
        return await future

    def close(self) -> None:
        """No new calls; calls not started are cancelled, idle threads end; running calls are
        abandoned (they end on their own, and their results are dropped)."""
        self._closed = True
        while True:
            try:
                pending = self._queue.get_nowait()
            except queue.Empty:
                break
            if pending is not None:
                self._hand_back(pending.loop, _Ended(pending.future, error=asyncio.CancelledError()))
        for _ in self._threads:
            self._queue.put(None)

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._idle:  # a thread waits for work: it takes this call
                self._idle -= 1
                return
        if len(self._threads) < self.size:
            thread = threading.Thread(target=self._work, name=f"{self.name}_{len(self._threads)}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if item.future.cancelled():  # cancelled before it started: never start it
                with self._lock:
                    self._idle += 1
            else:
                self._run(item)

    def _run(self, item: _Call) -> None:
        try:
            ended = _Ended(item.future, result=item.fn(*item.args))
        except BaseException as error:  # noqa: BLE001 - handed back to the caller as the pool did
            ended = _Ended(item.future, error=error)
        self._hand_back(item.loop, ended, idle=True)

    def _hand_back(self, loop: asyncio.AbstractEventLoop, ended: _Ended, *, idle: bool = False) -> None:
        """Add a result to the loop's list; the first one into an empty list wakes the loop.
        `idle`: the calling thread is done and goes back to the queue (counted in the same lock)."""
        with self._lock:
            self._idle += idle
            batch = self._ended.setdefault(loop, [])
            batch.append(ended)
            first = len(batch) == 1
        if first:
            try:
                loop.call_soon_threadsafe(self._deliver, loop)
            except RuntimeError:  # the loop is closed: no one waits for these results any more
                with self._lock:
                    self._ended.pop(loop, None)

    def _deliver(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the loop: resolve every result gathered since the wake-up was asked for."""
        with self._lock:
            batch = self._ended.pop(loop, [])
        self.wakeups += 1
        for ended in batch:
            future, error = ended.future, ended.error
            if future.done():  # its task was cancelled meanwhile: the result is dropped
                continue
            self.handed_back += 1
            if error is None:
                future.set_result(ended.result)
            elif isinstance(error, asyncio.CancelledError):
                future.cancel()
            elif isinstance(error, StopIteration):  # a future refuses it (the pool's hand-off raised TypeError)
                future.set_exception(RuntimeError(f"{error!r} escaped a sync call"))
            else:
                future.set_exception(error)
