"""The app that the integration tests' worker processes run (`stepwell worker integration_app:app`).

Every execution of a step appends one line to the file named by $STEPWELL_TEST_EFFECTS, with a
single O_APPEND write, so the tests can count side effects across processes that crash:

    <unix time> <pid> <run id> <attempt> <label>

A step can be held after writing its line (`data["hold"][label]` = at most that many seconds),
until the test creates the gate file `open-<run id>` next to the effects file.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import stepwell

EFFECTS_ENV = "STEPWELL_TEST_EFFECTS"
SPANS_ENV = "STEPWELL_TEST_SPANS"
FLEET_EVENT = "fleet.job"
RETRY_BACKOFF = stepwell.Backoff(base=timedelta(seconds=0.2), factor=2, jitter=0.2)
HOSTILE_BACKOFF = stepwell.Backoff(base=timedelta(seconds=0.1))


def effects_path() -> Path:
    return Path(os.environ[EFFECTS_ENV])


def gate_path(effects: Path, run_id: str) -> Path:
    return effects.parent / f"open-{run_id}"


def record(ctx: stepwell.Context[Any], label: str) -> dict[str, int]:
    """Append this execution's line, then hold if the run asks for it. Returns who did it."""
    line = f"{time.time():.6f} {os.getpid()} {ctx.run_id} {ctx.attempt} {label}\n"
    fd = os.open(effects_path(), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
    hold = ctx.event.data.get("hold", {}).get(label)
    if hold:
        gate = gate_path(effects_path(), ctx.run_id)
        deadline = time.monotonic() + float(hold)
        while time.monotonic() < deadline and not gate.exists():
            time.sleep(0.01)
    return {"pid": os.getpid(), "attempt": ctx.attempt}


def build_app(database_url: str | None = None) -> stepwell.App:
    app = stepwell.App("integration", database_url=database_url)

    @app.function("three-steps", retries=3)
    def three_steps(ctx: stepwell.Context[Any]) -> dict[str, int]:
        ctx.step.run("step-1", record, ctx, "step-1")
        ctx.step.run("step-2", record, ctx, "step-2")
        ctx.step.run("step-3", record, ctx, "step-3")
        return record(ctx, "tail")  # outside any step: runs on every attempt that gets this far

    @app.function("between-steps", retries=3)
    def between_steps(ctx: stepwell.Context[Any]) -> dict[str, int]:
        """A hold at "between" (outside any step) is a pause between two steps, like a long GC there."""
        ctx.step.run("step-1", record, ctx, "step-1")
        record(ctx, "between")
        ctx.step.run("step-2", record, ctx, "step-2")
        return {"pid": os.getpid(), "attempt": ctx.attempt}

    @app.function("swallows", retries=3)
    def swallows(ctx: stepwell.Context[Any]) -> dict[str, int]:
        """A common user pattern: carry on past a failing step. It must not carry on past a lost lease."""
        for label in ("step-1", "step-2", "step-3"):
            try:
                ctx.step.run(label, record, ctx, label)
            except Exception:  # noqa: BLE001 - the pattern under test
                continue
        return {"pid": os.getpid(), "attempt": ctx.attempt}

    @app.function("quick", retries=3)
    def quick(ctx: stepwell.Context[Any]) -> dict[str, int]:
        done: dict[str, int] = ctx.step.run("only", record, ctx, "only")
        return done

    @app.function("poison", retries=2)
    def poison(ctx: stepwell.Context[Any]) -> None:
        def kill_own_worker() -> None:
            record(ctx, "poison")
            os.kill(os.getpid(), signal.SIGKILL)

        ctx.step.run("kill", kill_own_worker)

    @app.function("hog", retries=3)
    def hog(ctx: stepwell.Context[Any]) -> dict[str, float]:
        def busy() -> dict[str, float]:
            record(ctx, "hog")
            started = time.monotonic()
            deadline = started + float(ctx.event.data["seconds"])
            spins = 0
            while time.monotonic() < deadline:  # pure CPU, no sleeping: competes for the GIL all along
                spins += 1
            return {"pid": os.getpid(), "spins": spins, "seconds": time.monotonic() - started}

        done: dict[str, float] = ctx.step.run("hog", busy)
        return done

    @app.function("always-fails", retries=3, backoff=RETRY_BACKOFF)
    def always_fails(ctx: stepwell.Context[Any]) -> None:
        def fail() -> None:
            record(ctx, "try")
            raise RuntimeError(f"failure of attempt {ctx.attempt}")

        ctx.step.run("try", fail)

    @app.function("crash-once", retries=3)
    def crash_once(ctx: stepwell.Context[Any]) -> None:
        where = ctx.event.data["crash"]

        def effect() -> dict[str, int]:
            done = record(ctx, "effect")
            if where == "inside-step" and ctx.attempt == 1:  # the side effect happened, its result is not stored
                os.kill(os.getpid(), signal.SIGKILL)
            return done

        ctx.step.run("effect", effect)
        if where == "after-commit" and ctx.attempt == 1:  # the step's result is stored, nothing else happened
            os.kill(os.getpid(), signal.SIGKILL)
        ctx.step.run("after", record, ctx, "after")

    @app.function("nap", retries=3)
    def nap(ctx: stepwell.Context[Any]) -> None:
        record(ctx, "entry")  # outside any step: once per claim of the run
        ctx.step.run("before", record, ctx, "before")
        ctx.step.sleep("nap", float(ctx.event.data["seconds"]))
        ctx.step.run("after", record, ctx, "after")

    @app.function("hostile", retries=1, backoff=HOSTILE_BACKOFF)
    def hostile(ctx: stepwell.Context[Any]) -> None:
        ctx.step.run("raise", raise_hostile, ctx)

    @app.function("hostile-async", retries=1, backoff=HOSTILE_BACKOFF)
    async def hostile_async(ctx: stepwell.Context[Any]) -> None:
        async def raise_on_the_loop() -> None:
            raise_hostile(ctx)

        await ctx.step.run("raise", raise_on_the_loop)

    @app.function("fan-out-child", retries=3)
    def fan_out_child(ctx: stepwell.Context[Any]) -> int:
        return int(ctx.event.data["i"])

    @app.function("fan-out-parent", retries=3)
    def fan_out_parent(ctx: stepwell.Context[Any]) -> int:
        count, stall_at = int(ctx.event.data["count"]), int(ctx.event.data["stall_at"])

        def items() -> Any:
            for i in range(count):
                if i == stall_at and ctx.attempt == 1:  # half the children exist: hold here to be SIGKILLed
                    record(ctx, "creating")
                    time.sleep(60)
                yield {"i": i}

        done = ctx.step.fan_out("children", fan_out_child, items())
        total: int = ctx.step.run("reduce", lambda: record(ctx, "reduce") and sum(x for x in done.results()))
        return total

    @app.function("fleet-job", trigger=stepwell.on_event(FLEET_EVENT), retries=3)
    def fleet_job(ctx: stepwell.Context[Any]) -> dict[str, int]:
        """The fleet and fault tests' job: one step, one effect line; `hold` makes it take a few ms."""
        done: dict[str, int] = ctx.step.run("job", record, ctx, "job")
        return done

    @app.function("drops-connections", retries=0)
    def drops_connections(ctx: stepwell.Context[Any]) -> dict[str, int]:
        """Its step ends by cutting the worker's own pooled connections, the first time: its result write meets one."""

        def cut() -> dict[str, int]:
            done = record(ctx, "cut")
            marker = effects_path().parent / f"cut-{ctx.run_id}"
            if not marker.exists():
                marker.touch()
                terminate_sessions(ctx.event.data["url"], ctx.event.data["application_name"])
            return done

        done: dict[str, int] = ctx.step.run("cut", cut)
        return done

    return app


def terminate_sessions(url: str, application_name: str) -> None:
    """pg_terminate_backend every session named `application_name`, and wait until they are gone."""
    import psycopg  # PostgreSQL-only tests use this; the app itself must import without the driver

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", [application_name]
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [application_name]
            ).fetchone()
            if row is not None and row[0] == 0:
                return
            time.sleep(0.01)


class StrRaises(Exception):
    def __str__(self) -> str:
        raise ValueError("no string for you")


HOSTILE: dict[str, Callable[[], BaseException]] = {
    "system-exit": lambda: SystemExit(3),
    "keyboard-interrupt": lambda: KeyboardInterrupt(),
    "huge-message": lambda: RuntimeError("x" * 1_000_000),
    "str-raises": lambda: StrRaises(),
}


def raise_hostile(ctx: stepwell.Context[Any]) -> None:
    record(ctx, "raise")
    raise HOSTILE[ctx.event.data["kind"]]()


def export_spans_to_file() -> None:
    """With $STEPWELL_TEST_SPANS set, every span this process ends is appended to that file as one
    JSON line (written as the span ends, so a SIGKILLed worker's finished spans are kept)."""
    target = os.environ.get(SPANS_ENV)
    if not target:
        return
    from opentelemetry import trace
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    class FileExporter(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            for span in spans:
                context, parent = span.get_span_context(), span.parent
                assert context is not None
                line = json.dumps({
                    "name": span.name, "pid": os.getpid(), "trace_id": context.trace_id, "span_id": context.span_id,
                    "parent": parent.span_id if parent else None,
                    "links": [link.context.span_id for link in span.links],
                    "attempt": (span.attributes or {}).get("stepwell.attempt"),
                }) + "\n"  # fmt: skip
                fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(fd, line.encode())
                finally:
                    os.close(fd)
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(FileExporter()))
    trace.set_tracer_provider(provider)


export_spans_to_file()
app = build_app()
