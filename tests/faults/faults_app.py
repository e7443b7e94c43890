"""The app the fault tests' worker processes run (`stepwell worker faults_app:app`).

Every execution of user code writes `start` and `end` lines to the effect ledger ($STEPWELL_FAULTS_LEDGER).
`data["pause"]` (seconds) holds a step between its two lines, so faults find work in flight.
`push_web` is the web app (FastAPI) that serves the function `pushed` by push mode through
`app.asgi()`, for the soak: its steps write the same ledger from the web app's process.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import stepwell
from tests.faults import ledger

JOB = "faults.job"
ORDERED = "faults.ordered"
LIMITED = "faults.limited"
MIXED = "faults.mixed"
PUSHED = "faults.pushed"
PUSHED_FUNCTION = "pushed"
LIMIT = 3
FAST = stepwell.Backoff(timedelta(milliseconds=100), jitter=0)


def effect(ctx: stepwell.Context[Any], step: str, **keys: Any) -> dict[str, Any]:
    """One step's user code: ledger `start`, hold for `pause`, ledger `end`."""
    args = (ctx.run_id, ctx.attempt, ctx.fencing_token, step)
    ledger.write(*args, "start", **keys)
    pause = float(ctx.event.data.get("pause", 0))
    if pause:
        time.sleep(pause)
    ledger.write(*args, "end", **keys)
    return {"attempt": ctx.attempt, "step": step}


def build_app(database_url: str | None = None) -> stepwell.App:
    app = stepwell.App("faults", database_url=database_url)

    @app.function("job", trigger=stepwell.on_event(JOB), retries=10)
    def job(ctx: stepwell.Context[Any]) -> dict[str, Any]:
        """Three steps with a gap after each: pauses and crashes land inside steps and between.
        `gaps` ({step: seconds}, on the first attempt only) sets one gap apart."""
        data = ctx.event.data
        for step in ("a", "b", "c"):
            ctx.step.run(step, effect, ctx, step)
            gap = data.get("gaps", {}).get(step) if ctx.attempt == 1 else None
            time.sleep(float(data.get("gap", 0) if gap is None else gap))
        return {"attempt": ctx.attempt}

    @app.function("ordered", trigger=stepwell.on_event(ORDERED), retries=10, ordering_key="event.data.key")
    def ordered(ctx: stepwell.Context[Any]) -> None:
        data = ctx.event.data
        ctx.step.run("only", effect, ctx, "only", key=data["key"], seq=data["seq"])

    @app.function("limited", trigger=stepwell.on_event(LIMITED), retries=10, concurrency=stepwell.Concurrency(LIMIT))
    def limited(ctx: stepwell.Context[Any]) -> None:
        ctx.step.run("only", effect, ctx, "only", scope="limited")

    @app.function("child", retries=10)
    def child(ctx: stepwell.Context[Any]) -> int:
        ctx.step.run("only", effect, ctx, "only")
        return int(ctx.event.data["i"])

    @app.function("mixed", trigger=stepwell.on_event(MIXED), retries=10)
    def mixed(ctx: stepwell.Context[Any]) -> int:
        """A step, a durable sleep, a fan-out of two children, a wait that times out, a last step."""
        ctx.step.run("a", effect, ctx, "a")
        ctx.step.sleep("nap", 0.2)
        done = ctx.step.fan_out("kids", child, [{"i": 1}, {"i": 2}])
        ctx.step.wait_for_event("never", event="faults.never", timeout=0.2)
        total: int = ctx.step.run("sum", lambda: effect(ctx, "sum") and sum(done.results()))
        return total

    @app.function(PUSHED_FUNCTION, trigger=stepwell.on_event(PUSHED), retries=10, backoff=FAST)
    def pushed(ctx: stepwell.Context[Any]) -> dict[str, Any]:
        """Three steps, served by `push_web` when it is registered (one request per new step)."""
        for step in ("a", "b", "c"):
            ctx.step.run(step, effect, ctx, step)
        return {"attempt": ctx.attempt}

    return app


app = build_app()


def push_web() -> Any:
    """`uvicorn --factory tests.faults.faults_app:push_web`: FastAPI with `/health` and the function
    `pushed` mounted at /api/stepwell (unsigned: loopback only), registered at $STEPWELL_SERVE_URL."""
    from fastapi import FastAPI

    web = FastAPI()

    @web.get("/health")
    def health() -> dict[str, str]:
        return {"ok": "yes"}

    web.mount("/api/stepwell", app.asgi(functions=[PUSHED_FUNCTION], dev=True))
    return web
