"""The worker's pipeline is bounded: bodies never outrun settles (issue 15, item 0).

A run counts against the room to claim from its claim until its outcome is saved. Here settling
is made slow (each settle waits a little before the real store saves the batch) while bodies are
instant no-ops at high concurrency with a large prefetch and claim batch: before the fix, the
worker kept claiming while completions piled up unsaved, without bound.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

import stepwell
from stepwell.runtime.worker import RELEASE_TIMEOUT, Worker, WorkerOptions
from stepwell.store.base import ClaimedRun, SettledAndClaimed, Settlement
from tests.pg_helpers import wait_until

RUNS = 3000
OPTIONS = WorkerOptions(concurrency=100, prefetch=300, claim_batch=200, poll_interval=0.05, maintenance=False)
SETTLE_DELAY = 0.03  # seconds added to every settle: settling is the bottleneck


def _leased_count(database_url: str) -> int:
    """Runs leased right now, seen from another connection: claimed, running or not yet settled."""
    query = "SELECT count(*) FROM runs WHERE status = 'running'"
    if database_url.startswith("sqlite:///"):
        import sqlite3

        with sqlite3.connect(Path(database_url.removeprefix("sqlite:///")), timeout=10) as conn:
            return int(conn.execute(query).fetchone()[0])
    with psycopg.connect(database_url, autocommit=True) as pg:
        row = pg.execute(query).fetchone()
        return int(row[0]) if row else 0


def test_a_fast_worker_never_holds_more_than_its_capacity(database_url: str) -> None:
    app = stepwell.App("pipeline", database_url=database_url)
    executions: Counter[str] = Counter()

    @app.function("noop", trigger=stepwell.on_event("noop"), retries=0)
    async def noop(ctx: stepwell.Context) -> None:  # type: ignore[type-arg]
        executions[ctx.run_id] += 1

    for start in range(0, RUNS, 1000):
        app.send([{"name": "noop", "data": {"i": i}} for i in range(start, start + 1000)])
    worker = app.worker(OPTIONS)
    combined = _slow_down_settles(worker)

    sampled: list[int] = []
    sampling = threading.Event()

    def sample() -> None:  # from outside the worker: what the database says is leased
        while not sampling.is_set():
            sampled.append(_leased_count(database_url))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        asyncio.run(_drain(worker, RUNS))
    finally:
        sampling.set()
        sampler.join(10)

    capacity = OPTIONS.capacity
    assert worker.peak_in_flight <= capacity, f"held {worker.peak_in_flight} runs at once, over {capacity}"
    assert worker.peak_in_flight >= capacity // 2, "the test did not fill the pipeline"
    assert max(sampled) <= capacity, f"the database saw {max(sampled)} runs leased at once, over {capacity}"
    assert combined, "no settle claimed in its own transaction: the test misses settle_and_claim's room"
    assert len(executions) == RUNS and set(executions.values()) == {1}, "every run executes exactly once"
    completed = app.runs(status="completed", limit=RUNS + 1)
    assert len(completed) == RUNS
    assert _leased_count(database_url) == 0
    app.close()


def _slow_down_settles(worker: Worker) -> list[int]:
    """Every settle (alone or with a claim) waits SETTLE_DELAY before the real store saves the batch (a slow
    database). Returns the runs claimed by each settle_and_claim, as they come."""
    settle, settle_and_claim = worker.store.settle_runs, worker.store.settle_and_claim
    combined: list[int] = []

    def slow(settlements: Sequence[Settlement], **kwargs: object) -> list[str]:
        time.sleep(SETTLE_DELAY)
        return settle(settlements, **kwargs)  # type: ignore[arg-type]

    def slow_with_claim(settlements: Sequence[Settlement], **kwargs: Any) -> SettledAndClaimed:
        time.sleep(SETTLE_DELAY)
        done = settle_and_claim(settlements, **kwargs)
        combined.append(len(done.claimed))
        return done

    worker.store.settle_runs = slow  # type: ignore[method-assign]
    worker.store.settle_and_claim = slow_with_claim  # type: ignore[method-assign]
    return combined


async def _drain(worker: Worker, runs: int) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    deadline = time.monotonic() + 120
    while worker.processed < runs and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    stop.set()
    await task
    assert worker.processed == runs, f"only {worker.processed} of {runs} runs processed in time"


def test_a_default_worker_claims_in_batches_whatever_its_concurrency(database_url: str) -> None:
    """Claim-ahead defaults to the claim batch: at concurrency 2 a drain is a few large claims,
    not one claim per couple of finished runs (prefetch used to default to the concurrency)."""
    app = stepwell.App("pipeline", database_url=database_url)

    @app.function("noop", trigger=stepwell.on_event("noop"), retries=0)
    def noop(ctx: stepwell.Context) -> None:  # type: ignore[type-arg]
        return None

    runs = 1000
    app.send([{"name": "noop", "data": {"i": i}} for i in range(runs)])
    options = WorkerOptions(concurrency=2, poll_interval=0.05, maintenance=False)
    worker = app.worker(options)
    limits: list[int] = []
    claimed: list[int] = []  # runs per claim that got any (claim_runs, or settle_and_claim's claim)
    claim, settle_and_claim = worker.store.claim_runs, worker.store.settle_and_claim

    def counted(**kwargs: Any) -> Any:
        limits.append(kwargs["limit"])
        got = claim(**kwargs)
        if got:
            claimed.append(len(got))
        return got

    def counted_with_settle(settlements: Sequence[Settlement], **kwargs: Any) -> SettledAndClaimed:
        limits.append(kwargs["limit"])
        done = settle_and_claim(settlements, **kwargs)
        if done.claimed:
            claimed.append(len(done.claimed))
        return done

    worker.store.claim_runs = counted  # type: ignore[method-assign]
    worker.store.settle_and_claim = counted_with_settle  # type: ignore[method-assign]
    asyncio.run(_drain(worker, runs))

    assert options.capacity == 2 + 100
    assert limits[0] == 100, limits[:5]
    # prefetch = concurrency (2) took 250 claims at least; here ~15-25
    assert sum(claimed) == runs and len(claimed) <= runs // 20, f"{len(claimed)} claims of {claimed}"
    assert worker.peak_in_flight <= options.capacity
    assert len(app.runs(status="completed", limit=runs + 1)) == runs
    app.close()


def test_options_name_what_is_wrong() -> None:
    for bad, named in [
        ({"linger": -1.0}, "linger"),
        ({"claim_batch": 0}, "claim_batch"),
        ({"poll_interval": 0.0}, "poll_interval"),
        ({"shutdown_timeout": -1.0}, "shutdown_timeout"),
        ({"prefetch": -1}, "prefetch"),
    ]:
        with pytest.raises(ValueError, match=named):
            WorkerOptions(**bad)  # type: ignore[arg-type]
    assert WorkerOptions(concurrency=8, prefetch=24).capacity == 32
    # prefetch defaults to the claim batch, whatever the concurrency: claims fill up at any concurrency
    assert WorkerOptions(concurrency=8).capacity == 8 + 100
    assert WorkerOptions(concurrency=200, claim_batch=50).capacity == 250
    assert WorkerOptions(concurrency=8, prefetch=0).capacity == 8  # 0 is kept: no claiming ahead


@contextmanager
def _database_blocked(database_url: str) -> Iterator[None]:
    """No write of the runs leased now gets through until the block exits (SQLite: any write at all)."""
    if database_url.startswith("sqlite:///"):
        import sqlite3

        conn = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None, timeout=30)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    with psycopg.connect(database_url) as pg:
        # One table lock, not row locks: FOR SHARE on the running rows could deadlock with a settle
        # already locking some of them in another order (it did, in CI), and PostgreSQL then
        # aborted the block instead of the worker's write.
        pg.execute("LOCK TABLE runs IN SHARE MODE")
        yield
        pg.rollback()


def test_shutdown_gives_up_within_its_bounds_when_the_database_never_answers(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Saving gets the shutdown timeout (at least 1 s), the release RELEASE_TIMEOUT: then run() returns."""
    app = stepwell.App("pipeline", database_url=database_url)

    @app.function("noop", trigger=stepwell.on_event("noop"), retries=0)
    async def noop(ctx: stepwell.Context) -> None:  # type: ignore[type-arg]
        return None

    app.send([{"name": "noop", "data": {"i": i}} for i in range(500)])
    options = WorkerOptions(concurrency=50, prefetch=450, claim_batch=500, shutdown_timeout=0.2, maintenance=False)
    worker = app.worker(options)
    _slow_down_settles(worker)  # the block below catches the first settle
    caplog.set_level(logging.INFO, logger="stepwell.worker")

    async def scenario() -> float:
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        while worker.in_flight() == 0:
            await asyncio.sleep(0.001)
        with _database_blocked(database_url):
            await asyncio.sleep(0.2)
            stop.set()
            stopping = time.monotonic()
            await asyncio.wait_for(task, timeout=30)  # returns: nothing raised
            return time.monotonic() - stopping

    took = asyncio.run(scenario())
    assert took <= 1.0 + RELEASE_TIMEOUT + 2.0, f"stopping took {took:.1f}s"
    assert "shutdown timeout" in caplog.text
    assert "could not release" in caplog.text  # one line, and the process may exit
    # The calls it gave up on finish now that the database answers; the store must outlive them
    # (a process would simply exit here, as `stepwell worker` does).
    wait_until(lambda: not _store_threads(), timeout=30, what="the abandoned store calls to end")
    app.close()


def _store_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(("stepwell-store", "stepwell-release"))]


def test_outcomes_linger_for_half_a_claim_batch_whatever_the_concurrency(database_url: str) -> None:
    """At concurrency 2 the linger used to end below concurrency // 2 (1) outcomes, so no outcome ever
    waited for another: a drain settled one or two runs per transaction. Now outcomes gather until half
    a claim batch is pending (or the oldest is `linger` old: a long linger here, so only the count ends it)."""
    app = stepwell.App("pipeline", database_url=database_url)

    @app.function("noop", trigger=stepwell.on_event("noop"), retries=0)
    def noop(ctx: stepwell.Context) -> None:  # type: ignore[type-arg]
        return None

    runs = 200
    app.send([{"name": "noop", "data": {"i": i}} for i in range(runs)])
    options = WorkerOptions(concurrency=2, claim_batch=20, linger=0.5, poll_interval=0.05, maintenance=False)
    worker = app.worker(options)
    batches: list[int] = []  # outcomes per settle, alone or with a claim
    settle, settle_and_claim = worker.store.settle_runs, worker.store.settle_and_claim

    def counted(settlements: Sequence[Settlement], **kwargs: Any) -> list[str]:
        batches.append(len(settlements))
        return settle(settlements, **kwargs)

    def counted_with_claim(settlements: Sequence[Settlement], **kwargs: Any) -> SettledAndClaimed:
        batches.append(len(settlements))
        return settle_and_claim(settlements, **kwargs)

    worker.store.settle_runs = counted  # type: ignore[method-assign]
    worker.store.settle_and_claim = counted_with_claim  # type: ignore[method-assign]
    asyncio.run(_drain(worker, runs))

    assert sum(batches) == runs
    *drained, _ = batches  # the last: what was left when the drain stopped
    assert drained and min(drained) >= 10, f"outcomes per settle: {batches}"
    assert len(app.runs(status="completed", limit=runs + 1)) == runs


def test_a_stopping_worker_claims_nothing_more_and_still_saves_its_outcomes(database_url: str) -> None:
    """Once stop is set, no settle carries a claim and no claim starts; the outcomes of runs that finish
    during the shutdown are saved (settle_runs), and the runs never started are released."""
    app = stepwell.App("pipeline", database_url=database_url)

    @app.function("slow", trigger=stepwell.on_event("slow"), retries=0)
    async def slow(ctx: stepwell.Context) -> None:  # type: ignore[type-arg]
        await asyncio.sleep(0.05)

    runs = 400
    app.send([{"name": "slow", "data": {"i": i}} for i in range(runs)])
    worker = app.worker(WorkerOptions(concurrency=10, poll_interval=0.05, maintenance=False))
    stop = asyncio.Event()
    calls: list[tuple[str, bool]] = []  # (verb, whether stop was set when it was called)
    claim, settle, settle_and_claim = worker.store.claim_runs, worker.store.settle_runs, worker.store.settle_and_claim

    def counted_claim(**kwargs: Any) -> list[ClaimedRun]:
        calls.append(("claim_runs", stop.is_set()))
        return claim(**kwargs)

    def counted_settle(settlements: Sequence[Settlement], **kwargs: Any) -> list[str]:
        calls.append(("settle_runs", stop.is_set()))
        return settle(settlements, **kwargs)

    def counted_both(settlements: Sequence[Settlement], **kwargs: Any) -> SettledAndClaimed:
        calls.append(("settle_and_claim", stop.is_set()))
        return settle_and_claim(settlements, **kwargs)

    worker.store.claim_runs = counted_claim  # type: ignore[method-assign]
    worker.store.settle_runs = counted_settle  # type: ignore[method-assign]
    worker.store.settle_and_claim = counted_both  # type: ignore[method-assign]

    async def stop_midway() -> None:
        task = asyncio.create_task(worker.run(stop))
        while worker.processed < 100:
            await asyncio.sleep(0.005)
        stop.set()
        await task

    asyncio.run(stop_midway())

    assert ("settle_and_claim", False) in calls, "the drain never settled and claimed in one transaction"
    after_stop = {verb for verb, stopping in calls if stopping}
    assert "settle_runs" in after_stop, "the runs that finished during the shutdown were not saved"
    assert after_stop <= {"settle_runs"}, f"claimed after stop: {calls}"
    completed = app.runs(status="completed", limit=runs + 1)
    assert len(completed) == worker.processed, "every run that finished has its outcome saved"
    assert len(app.runs(status="queued", limit=runs + 1)) == runs - worker.processed, "the rest released"
    assert _leased_count(database_url) == 0
