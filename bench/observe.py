"""Issue 11: the cost of observability, part by part. The same in-process no-op drain (and a one-step
drain) with each part on, against everything off, in paired rounds interleaved in one process.

Measured in CPU time (`time.process_time`: every thread of the process, the store's and the span
exporter's included) per run, not wall-clock: on a shared machine other processes stretch the
wall clock of whichever round they overlap, but not this process's CPU time. Each round runs
every mode once, in an order that rotates from round to round; a mode's ratio is the median over
rounds of (its CPU time / off's CPU time in the same round), so drift hits both sides of a ratio.

Modes:
- off: `configure(metrics=False, tracing=False)`; the seams stay in place (context fields,
  ctx.log lines, lifecycle records at INFO and above, which a no-op run never writes).
- metrics: the default Prometheus metrics.
- tracing: an OpenTelemetry SDK tracer provider (the SDK's default sampler: every span) with a
  batch span processor into an in-memory exporter.
- tracing 10%: the same provider with a parent-based 10% ratio sampler (what a busy deployment runs).
- both / both 10%: metrics and tracing together.
- debug logs: every run's start and completion written as JSON lines (to /dev/null), as
  `stepwell dev` or `-v` asks.

Target: the cost under 5%. Events are sent in batches of 100 (a batch's runs share their
producer's trace, so a parent-based sampler keeps or drops them together); sending is not timed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import stepwell
from bench.common import median, scratch_dir, table
from stepwell.observe import configure, logs
from stepwell.runtime.worker import WorkerOptions

SEND_BATCH = 100


@dataclass(frozen=True)
class Mode:
    label: str
    metrics: bool = False
    tracing: bool = False
    sample: float = 1.0  # the ratio of traces kept (parent-based), when tracing
    debug_logs: bool = False


MODES = (
    Mode("off"),
    Mode("metrics", metrics=True),
    Mode("tracing", tracing=True),
    Mode("tracing 10%", tracing=True, sample=0.1),
    Mode("both", metrics=True, tracing=True),
    Mode("both 10%", metrics=True, tracing=True, sample=0.1),
    Mode("debug logs", debug_logs=True),
)


def _app(url: str) -> stepwell.App:
    app = stepwell.App("bench-observe", database_url=url)

    @app.function("noop", trigger=stepwell.on_event("bench.noop"), retries=0)
    def noop(ctx: stepwell.Context) -> None:
        return None

    @app.function("one-step", trigger=stepwell.on_event("bench.one-step"), retries=0)
    def one_step(ctx: stepwell.Context) -> int:
        return int(ctx.step.run("only", lambda: 1))

    return app


class _Tracing:
    """An SDK tracer provider exporting to memory (installed once per process, as OpenTelemetry allows),
    whose sampler each mode can change."""

    def __init__(self) -> None:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, Sampler, TraceIdRatioBased

        class Switch(Sampler):
            def __init__(self) -> None:
                self.current: Sampler = ParentBased(ALWAYS_ON)  # the SDK's default

            def should_sample(self, *args: Any, **kwargs: Any) -> Any:
                return self.current.should_sample(*args, **kwargs)

            def get_description(self) -> str:
                return self.current.get_description()

        self._ratio = lambda ratio: ParentBased(ALWAYS_ON if ratio >= 1 else TraceIdRatioBased(ratio))
        self.sampler = Switch()
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider(sampler=self.sampler)
        self.provider.add_span_processor(BatchSpanProcessor(self.exporter))
        trace.set_tracer_provider(self.provider)

    def sample(self, ratio: float) -> None:
        self.sampler.current = self._ratio(ratio)

    def flush(self) -> int:
        """Export what is pending; the spans exported since the last flush."""
        self.provider.force_flush()
        count = len(self.exporter.get_finished_spans())
        self.exporter.clear()
        return count


class _DebugLogs:
    """Lifecycle records at DEBUG, formatted as JSON lines into /dev/null (the cost of writing them)."""

    def __init__(self) -> None:
        self.handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115 - kept for the process
        self.handler.setFormatter(logs.JsonFormatter())
        self.handler.addFilter(logs.ContextFilter())

    def switch(self, on: bool) -> None:
        logs.RUNS.setLevel(logging.DEBUG if on else logging.NOTSET)
        logs.RUNS.propagate = not on
        if on:
            logs.RUNS.addHandler(self.handler)
        else:
            logs.RUNS.removeHandler(self.handler)


async def _drain(app: stepwell.App, n: int) -> None:
    worker = app.worker(WorkerOptions(concurrency=10, poll_interval=0.05, maintenance=False))
    stop = asyncio.Event()
    started = time.perf_counter()
    task = asyncio.create_task(worker.run(stop))
    while worker.processed < n and time.perf_counter() - started < 300:
        await asyncio.sleep(0.005)
    stop.set()
    await task


@dataclass(frozen=True)
class Sample:
    cpu_per_run: float  # seconds of this process's CPU per run
    rate: float  # runs per wall-clock second
    spans: int


def _round(tmp: object, event: str, n: int, mode: Mode, tracing: _Tracing, debug: _DebugLogs) -> Sample:
    app = _app(f"sqlite:///{tmp}/observe-{mode.label.replace(' ', '-')}-{time.monotonic_ns()}.db")
    try:
        tracing.sample(mode.sample)  # the producers' spans decide for their runs (parent-based)
        for start in range(0, n, SEND_BATCH):
            app.send([{"name": event, "data": {"i": i}} for i in range(start, min(n, start + SEND_BATCH))])
        configure(metrics=mode.metrics, tracing=mode.tracing)
        tracing.flush()  # the producers' spans of the load: not this round's
        debug.switch(mode.debug_logs)
        cpu, wall = time.process_time(), time.perf_counter()
        asyncio.run(_drain(app, n))
        spans = tracing.flush()  # the export is part of the cost
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        return Sample(cpu / n, n / wall, spans)
    finally:
        debug.switch(False)
        configure(metrics=True, tracing=True)
        app.close()


def _rows(samples: dict[Mode, list[Sample]], n: int, rounds: int) -> list[list[object]]:
    off = samples[MODES[0]]  # measured in every selection (`modes` puts it first)
    rows: list[list[object]] = []
    for mode, found in samples.items():
        ratio = median([s.cpu_per_run / o.cpu_per_run for s, o in zip(found, off, strict=True)])
        rows.append([
            mode.label, n, rounds, median([s.cpu_per_run * 1e6 for s in found]), f"{ratio:.3f}",
            f"{ratio - 1:+.1%}", median([s.rate for s in found]), sum(s.spans for s in found) / (n * rounds),
            "-" if mode is MODES[0] else ("yes" if ratio < 1.05 else "no"),
        ])  # fmt: skip
    return rows


def modes(labels: str | None) -> tuple[Mode, ...]:
    """The modes named in `labels` (comma-separated; all when None), `off` first: every ratio is to it."""
    if labels is None:
        return MODES
    by_label = {mode.label: mode for mode in MODES}
    asked = [label.strip() for label in labels.split(",") if label.strip()]
    unknown = [label for label in asked if label not in by_label]
    if unknown:
        raise SystemExit(f"--modes: unknown {', '.join(map(repr, unknown))}; choose from {', '.join(by_label)}")
    return (MODES[0], *(by_label[label] for label in asked if label != MODES[0].label))


def observe_overhead(
    quick: bool, modes: Sequence[Mode] = MODES, runs: int | None = None, rounds: int | None = None
) -> None:
    """`runs` per round (default 5,000), `rounds` rounds per drain (default 5); quick: 200 runs, one round."""
    n, rounds = (200, 1) if quick else (runs or 5_000, rounds or 5)
    tracing, debug = _Tracing(), _DebugLogs()
    with scratch_dir() as tmp:
        _round(tmp, "bench.noop", min(n, 500), modes[0], tracing, debug)  # warm up: imports, first connections
        for label, event in (("no-op", "bench.noop"), ("one step", "bench.one-step")):
            samples: dict[Mode, list[Sample]] = {mode: [] for mode in modes}
            for index in range(rounds):
                turn = index % len(modes)  # rotated: no mode always runs first or right after another
                for mode in (*modes[turn:], *modes[:turn]):
                    samples[mode].append(_round(tmp, event, n, mode, tracing, debug))
            table(
                f"Observability cost, {label} drain: in-process SQLite worker (concurrency 10), CPU time per run",
                ["mode", "runs", "rounds", "CPU µs/run", "ratio to off", "cost", "runs/s", "spans/run", "under 5%"],
                _rows(samples, n, rounds),
                note="CPU time of the whole process (all threads) per run, ratios paired per round (median); "
                "runs/s is wall-clock and means little on a shared machine. Spans reached the in-memory exporter.",
            )
