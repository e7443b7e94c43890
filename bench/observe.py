"""Issue 11: the cost of observability. The same in-process no-op drain with metrics and tracing on
(spans to an in-memory sink through the SDK's batch processor) and off, rounds interleaved in one run.

Target: on costs under 5% of the drain rate. Lifecycle logs stay at their defaults (DEBUG records
for start and completion are not formatted unless asked).
"""

from __future__ import annotations

import asyncio
import time

import stepwell
from bench.common import median, scratch_dir, table
from stepwell.observe import configure
from stepwell.runtime.worker import WorkerOptions


def _app(url: str) -> stepwell.App:
    app = stepwell.App("bench-observe", database_url=url)

    @app.function("noop", trigger=stepwell.on_event("bench.noop"), retries=0)
    def noop(ctx: stepwell.Context) -> None:
        return None

    @app.function("one-step", trigger=stepwell.on_event("bench.one-step"), retries=0)
    def one_step(ctx: stepwell.Context) -> int:
        return int(ctx.step.run("only", lambda: 1))

    return app


def _install_sdk() -> object:
    """An SDK tracer provider exporting to memory (once per process, as OpenTelemetry allows)."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return exporter


async def _drain(app: stepwell.App, n: int) -> float:
    worker = app.worker(WorkerOptions(concurrency=10, poll_interval=0.05, maintenance=False))
    stop = asyncio.Event()
    started = time.perf_counter()
    task = asyncio.create_task(worker.run(stop))
    while worker.processed < n and time.perf_counter() - started < 300:
        await asyncio.sleep(0.005)
    elapsed = time.perf_counter() - started
    stop.set()
    await task
    return elapsed


def _round(tmp: object, label: str, event: str, n: int, enabled: bool) -> float:
    configure(metrics=enabled, tracing=enabled)
    app = _app(f"sqlite:///{tmp}/observe-{label}-{enabled}-{time.monotonic_ns()}.db")
    try:
        for start in range(0, n, 1000):
            app.send([{"name": event, "data": {"i": i}} for i in range(start, min(n, start + 1000))])
        return n / asyncio.run(_drain(app, n))
    finally:
        app.close()
        configure(metrics=True, tracing=True)


def observe_overhead(quick: bool) -> None:
    n, rounds = (300, 1) if quick else (10_000, 5)
    exporter = _install_sdk()
    rows = []
    with scratch_dir() as tmp:
        for label, event in (("no-op", "bench.noop"), ("one step", "bench.one-step")):
            rates: dict[bool, list[float]] = {False: [], True: []}
            for _ in range(rounds):
                for enabled in (False, True):  # interleaved: drift of the machine hits both alike
                    rates[enabled].append(_round(tmp, label.replace(" ", "-"), event, n, enabled))
            off, on = median(rates[False]), median(rates[True])
            rows.append(
                [label, n, rounds, off, on, f"{(off - on) / off:+.1%}", "yes" if (off - on) / off < 0.05 else "no"]
            )
    from opentelemetry import trace

    trace.get_tracer_provider().force_flush()  # type: ignore[attr-defined]
    spans = len(exporter.get_finished_spans())  # type: ignore[attr-defined]
    table(
        "Observability cost: in-process SQLite drain (concurrency 10), metrics + tracing on vs off",
        ["drain", "runs", "rounds", "off runs/s", "on runs/s", "cost", "under 5%"],
        rows,
        note=f"medians over interleaved rounds; {spans:,} spans reached the in-memory exporter. "
        "Figures from a loaded machine mean little: measure on a quiet one.",
    )
