"""Per-operation costs: one durable `step.run`, bulk enqueue, one event per `send` against a bare insert loop."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson

import stepwell
from bench.apps import make_app
from bench.common import median, table
from stepwell.runtime.worker import WorkerOptions


def _trivial(i: int) -> int:
    return i


def _steps_app(url: str, k: int) -> stepwell.App:
    app = stepwell.App("bench-steps", database_url=url)

    @app.function("steps", trigger=stepwell.on_event("bench.steps"), retries=0)
    def steps(ctx: stepwell.Context) -> list[float]:
        spent = []
        for i in range(k):
            begun = time.perf_counter()
            ctx.step.run(f"s{i}", _trivial, i)
            spent.append(time.perf_counter() - begun)
        return spent

    @app.function("steps-async", trigger=stepwell.on_event("bench.steps-async"), retries=0)
    async def steps_async(ctx: stepwell.Context) -> list[float]:
        spent = []
        for i in range(k):
            begun = time.perf_counter()
            await ctx.step.run(f"s{i}", _trivial, i)
            spent.append(time.perf_counter() - begun)
        return spent

    return app


@dataclass(frozen=True, slots=True)
class StepCost:
    runs: int
    steps_per_run: int
    median_ms: float  # median over runs of each run's mean time per step.run
    p90_ms: float  # over every single step.run
    max_ms: float


def step_cost(url: str, *, runs: int, k: int, is_async: bool = False) -> StepCost:
    """`runs` runs of a function doing `k` trivial steps, one at a time (concurrency 1: no queueing)."""
    function = "steps-async" if is_async else "steps"
    app = _steps_app(url, k)
    try:
        app.send([{"name": f"bench.{function}", "data": {"i": i}} for i in range(runs)])

        async def drain() -> None:
            worker = app.worker(WorkerOptions(concurrency=1, poll_interval=0.01, maintenance=False))
            stop = asyncio.Event()
            task = asyncio.create_task(worker.run(stop))
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                ended = [run for run in app.runs(function=function, limit=runs) if run.status.is_terminal]
                if len(ended) >= runs:
                    break
                await asyncio.sleep(0.05)
            stop.set()
            await task

        asyncio.run(drain())
        found = app.runs(function=function, limit=runs)
        failed = [run for run in found if run.status != "completed"]
        if failed or len(found) < runs:
            why = failed[0].error if failed else "not all runs were created"
            raise RuntimeError(f"step_cost: {len(failed)} of {runs} runs did not complete: {why}")
        outputs = [run.output for run in found]
    finally:
        app.close()
    per_run = [sum(spent) / len(spent) for spent in outputs]
    every = sorted(s for spent in outputs for s in spent)
    return StepCost(
        runs,
        k,
        median(per_run) * 1000,
        every[int(0.9 * (len(every) - 1))] * 1000,
        every[-1] * 1000,
    )


def bulk_enqueue(url: str, n: int, batch: int = 1000) -> float:
    """Events/s through `app.send(list)`, each event starting one run."""
    app = make_app(url)
    try:
        app.send([{"name": "bench.noop", "data": {"i": -1}}])  # open and migrate outside the timing
        begun = time.perf_counter()
        for start in range(0, n, batch):
            app.send([{"name": "bench.noop", "data": {"i": i}} for i in range(start, min(n, start + batch))])
        return n / (time.perf_counter() - begun)
    finally:
        app.close()


@dataclass(frozen=True, slots=True)
class SingleSend:
    calls: int
    send_us: float  # median over rounds of the mean time per call
    bare_us: float

    @property
    def ratio(self) -> float:
        """Stepwell's rate as a fraction of the bare loop's."""
        return self.bare_us / self.send_us


def single_send(url: str, calls: int, rounds: int = 3) -> SingleSend:
    """`app.send(name, data)` one event per call, against a bare single-row insert+commit loop, alternating."""
    app = make_app(url)
    bare = bare_loop(url)
    try:
        app.send("bench.noop", {"i": -1})
        bare(1)
        send_times, bare_times = [], []
        for _ in range(rounds):
            begun = time.perf_counter()
            for i in range(calls):
                app.send("bench.noop", {"i": i})
            send_times.append((time.perf_counter() - begun) / calls * 1e6)
            bare_times.append(bare(calls) / calls * 1e6)
        return SingleSend(calls, median(send_times), median(bare_times))
    finally:
        app.close()


def bare_loop(url: str) -> Callable[[int], float]:
    """A loop inserting one event-like row per transaction into the same database; returns seconds."""
    counter = iter(range(10**12))
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("CREATE TABLE IF NOT EXISTS bench_bare (id TEXT PRIMARY KEY, name TEXT, data BLOB, ts REAL)")
        sql = "INSERT INTO bench_bare VALUES (?, ?, ?, ?)"

        def run_sqlite(calls: int) -> float:
            begun = time.perf_counter()
            for _ in range(calls):
                i = next(counter)
                conn.execute(sql, (f"ev-{i}", "bench.noop", orjson.dumps({"i": i}), time.time()))
            return time.perf_counter() - begun

        return run_sqlite

    import psycopg

    pg = psycopg.connect(url, autocommit=True)
    pg.execute("CREATE TABLE IF NOT EXISTS bench_bare (id text PRIMARY KEY, name text, data jsonb, ts timestamptz)")
    pg_sql = "INSERT INTO bench_bare VALUES (%s, %s, %s, now())"

    def run_pg(calls: int) -> float:
        begun = time.perf_counter()
        for _ in range(calls):
            i = next(counter)
            pg.execute(pg_sql, (f"ev-{i}", "bench.noop", orjson.dumps({"i": i}).decode()))
        return time.perf_counter() - begun

    return run_pg


@dataclass(frozen=True, slots=True)
class Targets:
    step_ms: float
    bulk: int
    single: float = 0.8


SQLITE_TARGETS = Targets(step_ms=0.5, bulk=100_000)
POSTGRES_TARGETS = Targets(step_ms=1.0, bulk=50_000)


def ops_tables(backend: str, new_url: Callable[[], str], quick: bool, targets: Targets) -> None:
    """Print the step.run and enqueue tables for one backend; `new_url()` gives a fresh database each call."""
    runs, k = (10, 5) if quick else (200, 20)
    bulk_n = 2_000 if quick else 100_000
    calls = 100 if quick else 2_000
    costs = [
        ("sync", step_cost(new_url(), runs=runs, k=k)),
        ("async", step_cost(new_url(), runs=runs, k=k, is_async=True)),
    ]
    table(
        f"{backend} durable step.run: {runs} runs x {k} trivial steps, concurrency 1 "
        f"(target median <= {targets.step_ms} ms)",
        ["function", "median ms/step", "p90 ms", "max ms"],
        [[kind, c.median_ms, c.p90_ms, c.max_ms] for kind, c in costs],
        note="median: over runs, of each run's mean time per step.run, timed inside the function.",
    )
    rate = bulk_enqueue(new_url(), bulk_n)
    sent = single_send(new_url(), calls)
    table(
        f"{backend} enqueue (each event starts one run)",
        ["measure", "value", "target"],
        [
            [f"bulk send, batches of 1,000 ({bulk_n:,} events): events/s", rate, f">= {targets.bulk:,}"],
            [f"send() one event per call ({calls:,} calls): us/call", sent.send_us, ""],
            ["bare insert+commit of one row, same database: us/call", sent.bare_us, ""],
            ["send() rate as a fraction of the bare loop", f"{sent.ratio:.0%}", f">= {targets.single:.0%}"],
        ],
        note="single send: median of 3 alternating rounds of each loop.",
    )
