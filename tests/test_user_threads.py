"""Sync user code on the worker's own threads, outcomes handed back in batches (issue 15, item 1).

The runner replaced `loop.run_in_executor` per sync run: these tests pin what it must keep (a
bounded number of threads, exceptions raised at the await, a cancelled call never started or
abandoned) and what it adds (calls that end together wake the loop once).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest

import stepwell
from stepwell.runtime.userthreads import UserThreads
from stepwell.runtime.worker import WorkerOptions
from tests.pg_helpers import wait_until

RUNS = 100


def _block_until(done: Callable[[], bool], timeout: float = 10.0) -> None:
    """Hold the event loop's thread (not awaiting) until `done()`: nothing is delivered meanwhile."""
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        time.sleep(0.001)
    assert done(), "the calls did not end in time"


def test_calls_that_end_together_wake_the_loop_once() -> None:
    threads = UserThreads(RUNS)
    release = threading.Event()
    ended: list[int] = []

    def body(i: int) -> int:
        release.wait(10)
        ended.append(i)
        return i * 2

    async def scenario() -> list[int]:
        calls = [asyncio.ensure_future(threads.call(body, i)) for i in range(RUNS)]
        await asyncio.sleep(0)  # every call queued
        release.set()
        _block_until(lambda: len(ended) == RUNS)
        time.sleep(0.2)  # the last results reach the list after their body returned
        return list(await asyncio.gather(*calls))

    try:
        assert asyncio.run(scenario()) == [i * 2 for i in range(RUNS)]
    finally:
        threads.close()
    assert threads.handed_back == RUNS
    # one; two if a thread was descheduled for 0.2 s between its body's end and its hand-back
    assert threads.wakeups <= 2, f"{threads.wakeups} wake-ups for {RUNS} results that ended together"


def test_no_more_calls_run_at_once_than_threads() -> None:
    threads = UserThreads(4)
    running, peak, lock = 0, 0, threading.Lock()

    def body() -> str:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.01)
        with lock:
            running -= 1
        return threading.current_thread().name

    async def scenario() -> list[str]:
        return list(await asyncio.gather(*(threads.call(body) for _ in range(40))))

    try:
        names = asyncio.run(scenario())
    finally:
        threads.close()
    assert peak == 4
    assert len(set(names)) == 4 and all(name.startswith("stepwell-run_") for name in names)


def test_an_exception_is_raised_at_the_await() -> None:
    threads = UserThreads(2)

    def fails() -> None:
        raise ValueError("from user code")

    def stops() -> None:
        raise StopIteration

    async def scenario() -> None:
        with pytest.raises(ValueError, match="from user code"):
            await threads.call(fails)
        with pytest.raises(RuntimeError, match="StopIteration"):  # a future cannot carry StopIteration
            await threads.call(stops)
        assert await threads.call(lambda: "after") == "after"  # the thread carries on

    try:
        asyncio.run(scenario())
    finally:
        threads.close()


def test_a_call_cancelled_before_it_starts_never_runs_and_one_cancelled_while_running_is_abandoned() -> None:
    threads = UserThreads(1)
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def stuck() -> str:
        started.set()
        release.wait(10)
        ran.append("stuck")
        return "dropped"

    async def scenario() -> None:
        running = asyncio.ensure_future(threads.call(stuck))
        await asyncio.to_thread(started.wait, 10)
        queued = asyncio.ensure_future(threads.call(ran.append, "queued"))
        await asyncio.sleep(0)
        queued.cancel()
        running.cancel()  # abandoned: it runs on to its end, its result is dropped
        await asyncio.gather(running, queued, return_exceptions=True)
        release.set()
        assert await threads.call(lambda: "next") == "next"  # the one thread took the next call

    try:
        asyncio.run(scenario())
    finally:
        threads.close()
    assert ran == ["stuck"]
    assert threads.handed_back == 1  # only "next": the abandoned result was dropped


def test_close_cancels_what_has_not_started_and_never_waits_for_a_stuck_call() -> None:
    threads = UserThreads(1)
    started, release = threading.Event(), threading.Event()

    async def scenario() -> None:
        stuck = asyncio.ensure_future(threads.call(lambda: (started.set(), release.wait(10))))
        await asyncio.to_thread(started.wait, 10)
        waiting = asyncio.ensure_future(threads.call(lambda: "never"))
        await asyncio.sleep(0)
        closing = time.monotonic()
        threads.close()
        assert time.monotonic() - closing < 0.5
        with pytest.raises(asyncio.CancelledError):
            await waiting
        with pytest.raises(RuntimeError, match="closed"):
            await threads.call(lambda: "too late")
        stuck.cancel()

    try:
        asyncio.run(scenario())
        assert all(t.daemon for t in threading.enumerate() if t.name.startswith("stepwell-run_"))
    finally:
        release.set()
    wait_until(lambda: not _user_threads(), timeout=10, what="the user thread to end once its call returned")


def test_sync_runs_finishing_together_share_wake_ups_in_the_worker(database_url: str) -> None:
    app = stepwell.App("user-threads", database_url=database_url)
    together = threading.Barrier(RUNS, timeout=30)
    threads_seen: set[str] = set()

    @app.function("together", trigger=stepwell.on_event("together"), retries=0)
    def body(ctx: stepwell.Context) -> int:  # type: ignore[type-arg]
        body_thread = threading.current_thread().name
        step_thread = ctx.step.run("first", lambda: threading.current_thread().name)
        assert step_thread == body_thread  # a sync function's steps run on the thread of its body
        together.wait()
        threads_seen.add(body_thread)
        return int(ctx.event.data["i"])

    app.send([{"name": "together", "data": {"i": i}} for i in range(RUNS)])
    worker = app.worker(WorkerOptions(concurrency=RUNS, poll_interval=0.05, maintenance=False))

    async def drain() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        deadline = time.monotonic() + 60
        while worker.processed < RUNS and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        stop.set()
        await task

    asyncio.run(drain())
    assert worker.processed == RUNS
    assert len(app.runs(status="completed", limit=RUNS + 1)) == RUNS
    assert worker.user_threads.handed_back == RUNS
    assert worker.user_threads.wakeups <= RUNS // 4, f"{worker.user_threads.wakeups} wake-ups for {RUNS} runs"
    assert len(threads_seen) == RUNS and all(name.startswith("stepwell-run_") for name in threads_seen)
    app.close()


def test_a_stuck_sync_run_is_abandoned_at_shutdown_and_its_lease_released(database_url: str) -> None:
    app = stepwell.App("user-threads", database_url=database_url)
    started, release = threading.Event(), threading.Event()

    @app.function("stuck", trigger=stepwell.on_event("stuck"), retries=0)
    def stuck(ctx: stepwell.Context) -> str:  # type: ignore[type-arg]
        started.set()
        release.wait(30)  # past the shutdown timeout
        return "late"

    app.send("stuck", {})
    worker = app.worker(WorkerOptions(concurrency=2, shutdown_timeout=0.2, poll_interval=0.05, maintenance=False))

    async def scenario() -> float:
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        await asyncio.to_thread(started.wait, 10)
        stop.set()
        stopping = time.monotonic()
        await asyncio.wait_for(task, timeout=30)
        return time.monotonic() - stopping

    try:
        took = asyncio.run(scenario())
        assert took < 0.2 + 1.0 + 2.0, f"stopping took {took:.1f}s"
        [run] = app.runs(function="stuck")
        assert run.status == stepwell.RunStatus.QUEUED  # released for another worker, not lost
    finally:
        release.set()
    wait_until(lambda: not _user_threads(), timeout=10, what="the abandoned run's thread to end")
    [run] = app.runs(function="stuck")
    assert run.status == stepwell.RunStatus.QUEUED and run.output is None  # its late result was dropped
    app.close()


def _user_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("stepwell-run_")]
