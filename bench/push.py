"""Issue 13: push mode on loopback beside the pull worker, in the same run.

The web app is uvicorn in its own process serving `app.asgi()` (unsigned, development mode); the
dispatcher runs in this process. Two figures each way:

- a no-op drain (runs/s): N runs of a function that does nothing;
- the cost per step (median and p99): runs of a ten-step function, one at a time, timed between
  the steps' stored end times, so each sample is one step: a round trip to the endpoint plus a
  stored write in push mode, a stored write in pull mode;
- CPU per no-op run (ms): the worker's process, or the dispatcher's plus the web app's. Wall figures
  move with whatever else the machine runs; CPU time per run moves much less, so compare it on a
  shared machine.

Targets: per-step overhead (push minus pull) <= 2 ms median; push drain >= 50% of the pull drain.
Figures are machine-dependent: measure on a quiet machine.
"""

from __future__ import annotations

import asyncio
import sys
import time
from itertools import pairwise
from pathlib import Path

import stepwell
from bench.common import cpu_seconds, median, percentile, scratch_dir, spawn, stop, table
from bench.push_app import app_named
from stepwell.push.dispatcher import Dispatcher, PushOptions
from stepwell.runtime.worker import WorkerOptions


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _until(done: object, n: int, limit: float = 600.0) -> float:
    started = time.perf_counter()
    while done() < n and time.perf_counter() - started < limit:  # type: ignore[operator]
        await asyncio.sleep(0.005)
    return time.perf_counter() - started


def _send(app: object, event: str, n: int) -> list[str]:
    ids: list[str] = []
    for start in range(0, n, 1000):
        ids += app.send([{"name": event, "data": {"i": i}} for i in range(start, min(n, start + 1000))])  # type: ignore[attr-defined]
    return ids


def _terminal(app: object, event_ids: list[str]) -> int:
    done = 0
    for event_id in event_ids:
        done += sum(1 for run in app.runs(event_id=event_id) if run.status.is_terminal)  # type: ignore[attr-defined]
    return done


def _step_times(app: object, event_ids: list[str]) -> list[float]:
    samples: list[float] = []
    for event_id in event_ids:
        for run in app.runs(event_id=event_id):  # type: ignore[attr-defined]
            ends = [step.ended_at for step in app.get_run(run.id).steps if step.ended_at]  # type: ignore[attr-defined]
            samples += [(b - a).total_seconds() * 1000 for a, b in pairwise(ends)]
    return samples


async def _one_at_a_time(app: object, runs: int) -> list[str]:
    """Send the ten-step function's runs one after the other: each step's time is then its own."""
    sent: list[str] = []
    for _ in range(runs):
        sent += _send(app, "bench.steps", 1)
        await _until(lambda sent=sent: _terminal(app, sent), len(sent), 60)  # type: ignore[misc]
    return sent


async def _pull(url: str, noop: int, stepped: int) -> tuple[float, float, list[float]]:
    app = app_named("bench-pull", url)
    try:
        _send(app, "bench.noop", noop)
        worker = app.worker(WorkerOptions(concurrency=10, poll_interval=0.05, maintenance=False))
        stop_event = asyncio.Event()
        cpu = cpu_seconds()
        task = asyncio.create_task(worker.run(stop_event))
        rate = noop / await _until(lambda: worker.processed, noop)
        cpu_ms = (cpu_seconds() - cpu) * 1000 / noop
        stepped_ids = await _one_at_a_time(app, stepped)
        stop_event.set()
        await task
        return rate, cpu_ms, _step_times(app, stepped_ids)
    finally:
        app.close()


async def _push(url: str, tmp: Path, noop: int, stepped: int) -> tuple[float, float, list[float]]:
    port = _free_port()
    env = {"STEPWELL_DATABASE_URL": url, "STEPWELL_SERVE_URL": f"http://127.0.0.1:{port}/"}
    web = spawn(
        [sys.executable, "-m", "uvicorn", "--factory", "bench.push_app:web", "--port", str(port), "--log-level",
         "warning"], env=env, log=tmp / "push-web.log",
    )  # fmt: skip
    server = stepwell.App("bench-server", database_url=url)  # no functions: events route from the registry
    try:
        deadline = time.monotonic() + 60
        while {"noop", "steps"} - set(server.store.push_endpoints()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the push web app did not register; see {tmp / 'push-web.log'}")
            await asyncio.sleep(0.05)
        options = PushOptions(dev=True, allow_loopback=True, poll_interval=0.05, per_endpoint=10, concurrency=10)
        dispatcher = Dispatcher(server.store, server.clock, server.router, options)
        stop_event = asyncio.Event()
        task = asyncio.create_task(dispatcher.run(stop_event))
        _send(server, "bench.noop", noop)
        cpu = cpu_seconds() + cpu_seconds(web.pid)
        rate = noop / await _until(lambda: dispatcher.delivered, noop)
        cpu_ms = (cpu_seconds() + cpu_seconds(web.pid) - cpu) * 1000 / noop
        stepped_ids = await _one_at_a_time(server, stepped)
        stop_event.set()
        await task
        return rate, cpu_ms, _step_times(server, stepped_ids)
    finally:
        server.close()
        stop(web)


def _row(mode: str, rate: float, cpu_ms: float, steps: list[float]) -> list[object]:
    return [mode, round(rate), round(cpu_ms, 3), round(median(steps), 2), round(percentile(steps, 99), 2)]


def push_overhead(quick: bool) -> None:
    noop, stepped = (30, 2) if quick else (5_000, 50)
    with scratch_dir() as tmp:
        pull_rate, pull_cpu, pull_steps = asyncio.run(_pull(f"sqlite:///{tmp}/pull.db", noop, stepped))
        push_rate, push_cpu, push_steps = asyncio.run(_push(f"sqlite:///{tmp}/push.db", tmp, noop, stepped))
    overhead = median(push_steps) - median(pull_steps)
    table(
        f"push vs pull on loopback, SQLite ({noop:,} no-op runs; {stepped} runs of 10 steps, one at a time)",
        ["mode", "no-op runs/s", "CPU ms/run", "step median ms", "step p99 ms"],
        [
            _row("pull worker", pull_rate, pull_cpu, pull_steps),
            _row("push (dispatcher + web app)", push_rate, push_cpu, push_steps),
        ],
        note=f"per-step overhead (median, push - pull): {overhead:.2f} ms (target <= 2); "
        f"push drain {push_rate / pull_rate:.0%} of pull (target >= 50%)",
    )
