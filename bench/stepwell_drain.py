"""Stepwell no-op drains: a pre-loaded backlog, then real `stepwell worker` processes, timed from outside.

Also the in-process drain on an instrumented SQLite store that counts write transactions.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import stepwell
from bench.apps import make_app
from bench.common import Drain, spawn, stop, tree_memory
from bench.worker import command as worker_command
from stepwell.runtime.worker import WorkerOptions
from stepwell.store.sqlite.store import SQLiteStore

EVENTS = {
    "noop": "bench.noop",
    "noop-async": "bench.noop-async",
    "ordered": "bench.ordered",
    "limited": "bench.limited",
}


def preload(app: stepwell.App, function: str, n: int, batch: int = 1000, keys: int = 10_000) -> None:
    """`n` events for `function`; each carries `key` (one of `keys`), which ordered and limited functions use."""
    name = EVENTS[function]
    for start in range(0, n, batch):
        app.send([{"name": name, "data": {"i": i, "key": f"k{i % keys}"}} for i in range(start, min(n, start + batch))])


class AnyLeft:
    """A cheap "is any run still queued or running?" for polling: index lookups, not a count.

    Close it before reading PostgreSQL's counters: an idle backend reports its transactions (these
    polls) only every 10 s, or when it exits."""

    SQL = (
        "SELECT EXISTS (SELECT 1 FROM runs WHERE status IN ('queued', 'sleeping'))"
        " OR EXISTS (SELECT 1 FROM runs WHERE status = 'running')"
    )

    def __init__(self, url: str) -> None:
        if url.startswith("sqlite:///"):
            self._conn: Any = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        else:
            import psycopg

            self._conn = psycopg.connect(url, autocommit=True)

    def __call__(self) -> bool:
        return bool(self._conn.execute(self.SQL).fetchone()[0])

    def close(self) -> None:
        self._conn.close()


def drain_window(app: stepwell.App, n: int) -> tuple[int, float]:
    """(completed runs, seconds from the first start to the last end), from the runs' own timestamps."""
    runs = app.runs(status="completed", limit=n + 10)
    starts = [run.started_at for run in runs if run.started_at is not None]
    ends = [run.ended_at for run in runs if run.ended_at is not None]
    if not starts or not ends:
        return len(runs), 0.0
    return len(runs), (max(ends) - min(starts)).total_seconds()


class DrainMeter(Protocol):
    """Measures something around a drain (bench/pg_work.py: the database's work), without touching the
    bench database itself: `begin` before the worker starts, `sample` at each of the bench's polls
    while it runs (with the worker's pid), `end` once it has stopped."""

    def begin(self) -> None: ...

    def sample(self, worker_pid: int) -> None: ...

    def end(self) -> None: ...


@dataclass(frozen=True, slots=True)
class WorkerDrain:
    drain: Drain
    commits: int | None = None  # transactions counted while draining, when the backend can count them
    polls: int = 0  # the bench's own transactions in the database while draining (one per poll)


def drain_with_workers(
    url: str,
    n: int,
    *,
    function: str = "noop",
    concurrency: int = 10,
    processes: int = 1,
    limit: float = 300.0,
    log: Path | None = None,
    count_commits: bool = False,
    keys: int = 10_000,
    meter: DrainMeter | None = None,
) -> WorkerDrain:
    """Pre-load `n` runs, start the worker (processes x concurrency), wait until none is left.

    The rate comes from the runs' own timestamps (first started_at to last ended_at), so process
    start-up is left out; the bench polls only a cheap existence check every 20 ms.
    """
    loader = make_app(url)
    try:
        preload(loader, function, n, keys=keys)
    finally:
        loader.close()  # its backends exit, and so report their transactions, before any counting begins
    left = AnyLeft(url)
    assert left()
    commits_before = _pg_commits(url, settle=True) if count_commits else None
    polls = 0
    argv = worker_command("bench.apps:app", url, concurrency=concurrency, processes=processes)
    if meter:
        meter.begin()
    started = time.perf_counter()
    proc = spawn(argv, log=log)
    try:
        while proc.poll() is None and time.perf_counter() - started < limit:
            polls += 1
            busy = left()
            if meter:
                meter.sample(proc.pid)
            if not busy:
                break
            time.sleep(0.02)
        wall = time.perf_counter() - started
        memory = tree_memory(proc.pid)
    finally:
        stop(proc)
        left.close()  # an idle backend reports its transactions only every 10 s, or when it exits
    if meter:
        meter.end()
    commits = None
    if commits_before is not None:
        # less our own: the polls, the check before them, and the connection that read commits_before
        commits = _pg_commits(url, settle=True) - commits_before - polls - 2
    app = make_app(url)
    try:
        done, seconds = drain_window(app, n)
    finally:
        app.close()
    return WorkerDrain(Drain(done, seconds, wall, done == n, memory), commits, polls)


def _pg_commits(url: str, settle: bool = False) -> int:
    """Transactions committed in this database (pg_stat_database.xact_commit), after stats are flushed."""
    import psycopg

    if settle:
        time.sleep(1.2)  # backends flush their counters at most once a second, and at exit
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()").fetchone()
    return int(row[0]) if row else 0


# the instrumented SQLite drain


class CountingSQLiteStore(SQLiteStore):
    """The SQLite store, counting its write transactions by operation: one per verb call. Concurrent calls
    may share one COMMIT (store/sqlite/groupcommit.py); `write_stats()` counts those."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.commits: Counter[str] = Counter()

    @contextlib.contextmanager
    def _write(self, operation: str) -> Iterator[object]:  # type: ignore[override]
        with super()._write(operation) as conn:
            yield conn
        self.commits[operation] += 1


@dataclass(frozen=True, slots=True)
class CountedDrain:
    runs: int
    seconds: float
    commits: Counter[str]  # write transactions by operation, one per verb call
    shared: int  # COMMITs the writer connection made for them: fewer when calls were grouped

    @property
    def per_run(self) -> float:
        return sum(self.commits.values()) / self.runs


def counted_sqlite_drain(path: Path, n: int, *, function: str = "noop", concurrency: int = 10) -> CountedDrain:
    """Drain `n` pre-loaded runs with an in-process worker over CountingSQLiteStore."""
    store = CountingSQLiteStore(path)
    store.migrate()
    app = make_app()
    app.bind(store)
    try:
        preload(app, function, n)
        store.commits.clear()
        before = store.write_stats().commits
        seconds = asyncio.run(_drain_in_process(app, n, concurrency))
        shared = store.write_stats().commits - before
        done = len(app.runs(status="completed", limit=n))
        if done < n:
            raise RuntimeError(f"counted drain: only {done} of {n} runs completed")
        return CountedDrain(n, seconds, Counter(store.commits), shared)
    finally:
        app.close()


async def _drain_in_process(app: stepwell.App, n: int, concurrency: int) -> float:
    worker = app.worker(WorkerOptions(concurrency=concurrency, poll_interval=0.05))
    stop_event = asyncio.Event()
    started = time.perf_counter()
    task = asyncio.create_task(worker.run(stop_event))
    deadline = time.monotonic() + 300
    while worker.processed < n and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    stop_event.set()
    await task  # settles what is still pending
    return time.perf_counter() - started
