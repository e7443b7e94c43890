"""Durable steps: memoization, replay order, sleeps, suspension that user code cannot swallow."""

from __future__ import annotations

from datetime import timedelta

import pytest

import stepwell
from stepwell.model.records import RunStatus, StepStatus
from stepwell.testing import TestEnv


def test_completed_steps_are_not_executed_again_when_a_later_step_fails() -> None:
    app = stepwell.App("t")
    calls: list[str] = []

    @app.function("pipeline", trigger=stepwell.on_event("go"), retries=2)
    def pipeline(ctx: stepwell.Context) -> dict[str, int]:
        a = ctx.step.run("fetch", lambda: calls.append("fetch") or 1)
        b = ctx.step.run("flaky", lambda: _flaky(calls))
        return {"sum": a + b}

    with TestEnv(app) as env:
        env.send("go")
        env.run_until_idle()
        [run] = app.runs()
        assert run.status == RunStatus.COMPLETED and run.output == {"sum": 3}
        assert calls == ["fetch", "flaky", "flaky"]
        full = app.get_run(run.id)
        assert full.step("flaky").attempts == 2
        assert [e.type for e in full.errors] == ["RuntimeError"]


def _flaky(calls: list[str]) -> int:
    calls.append("flaky")
    if calls.count("flaky") == 1:
        raise RuntimeError("first time fails")
    return 2


def test_repeated_step_names_get_deterministic_ids() -> None:
    app = stepwell.App("t")

    @app.function("loop", trigger=stepwell.on_event("go"))
    def loop(ctx: stepwell.Context) -> list[int]:
        return [ctx.step.run("square", lambda i=i: i * i) for i in range(3)]

    with TestEnv(app) as env:
        env.send("go")
        env.run_until_idle()
        run = app.get_run(app.runs()[0].id)
        assert [s.id for s in run.steps] == ["square", "square#2", "square#3"]
        assert run.output == [0, 1, 4]


def test_a_sleep_of_a_day_passes_in_virtual_time_and_resumes_after_it() -> None:
    app = stepwell.App("t")
    seen: list[object] = []

    @app.function("later", trigger=stepwell.on_event("go"))
    def later(ctx: stepwell.Context) -> str:
        ctx.step.run("before", lambda: seen.append("x"))
        ctx.step.sleep("wait-a-day", "1d")
        ctx.step.run("after", lambda: seen.append("y"))
        return "done"

    with TestEnv(app) as env:
        start = env.clock.now()
        env.send("go")
        env.run_until_idle(skip_time=False)
        [run] = app.runs()
        assert run.status == RunStatus.SLEEPING
        assert run.available_at == start + timedelta(days=1)
        env.advance(hours=23)
        env.run_until_idle(skip_time=False)
        assert app.get_run(run.id).status == RunStatus.SLEEPING
        env.advance(hours=1)
        env.run_until_idle(skip_time=False)
        done = app.get_run(run.id)
        assert done.status == RunStatus.COMPLETED
        assert seen == ["x", "y"]
        assert done.step("wait-a-day").status == StepStatus.COMPLETED


def test_sleep_until_a_moment() -> None:
    app = stepwell.App("t")

    @app.function("until", trigger=stepwell.on_event("go"))
    def until(ctx: stepwell.Context) -> None:
        ctx.step.sleep_until("alarm", ctx.event.ts + timedelta(hours=5))

    with TestEnv(app) as env:
        start = env.clock.now()
        env.send("go")
        env.run_until_idle()
        [run] = app.runs()
        assert run.status == RunStatus.COMPLETED
        assert env.clock.now() == start + timedelta(hours=5)


def test_except_exception_in_user_code_cannot_swallow_a_suspension() -> None:
    app = stepwell.App("t")

    @app.function("stubborn", trigger=stepwell.on_event("go"))
    def stubborn(ctx: stepwell.Context) -> str:
        try:
            ctx.step.sleep("nap", "1h")
        except Exception:  # noqa: BLE001 - the point of the test
            return "swallowed"
        return "slept"

    with TestEnv(app) as env:
        env.send("go")
        env.run_until_idle(skip_time=False)
        assert app.runs()[0].status == RunStatus.SLEEPING
        env.run_until_idle()
        assert app.runs()[0].output == "slept"


def test_reordered_steps_are_reported_naming_both_steps() -> None:
    app = stepwell.App("t")
    version = {"n": 1}

    @app.function("deploy", trigger=stepwell.on_event("go"))
    def deploy(ctx: stepwell.Context) -> None:
        if version["n"] == 1:
            ctx.step.run("charge", lambda: 1)
        else:
            ctx.step.run("email", lambda: 1)
        ctx.step.sleep("wait", "1h")

    with TestEnv(app) as env:
        env.send("go")
        env.run_until_idle(skip_time=False)
        version["n"] = 2
        env.run_until_idle()
        run = app.get_run(app.runs()[0].id)
        assert run.status == RunStatus.FAILED
        assert run.error is not None and run.error.type == "NonDeterminismError"
        assert "'run charge'" in run.error.message and "'run email'" in run.error.message
        assert [d.run_id for d in app.dead_letters()] == [run.id]


def test_async_functions_use_the_same_steps_with_await() -> None:
    app = stepwell.App("t")

    async def double(x: int) -> int:
        return x * 2

    @app.function("async-fn", trigger=stepwell.on_event("go"))
    async def async_fn(ctx: stepwell.Context) -> int:
        a = await ctx.step.run("sync-callable", lambda: 20)
        b = await ctx.step.run("async-callable", double, 1)
        await ctx.step.sleep("nap", "5m")
        return int(a + b)

    with TestEnv(app) as env:
        env.send("go")
        env.run_until_idle()
        run = app.get_run(app.runs()[0].id)
        assert (run.status, run.output) == (RunStatus.COMPLETED, 22)
        assert [s.id for s in run.steps] == ["sync-callable", "async-callable", "nap"]


def test_context_exposes_run_identity_for_idempotency_keys() -> None:
    app = stepwell.App("t")
    keys: list[str] = []

    @app.function("keyed", trigger=stepwell.on_event("go"))
    def keyed(ctx: stepwell.Context) -> dict[str, object]:
        keys.append(f"{ctx.run_id}:charge")
        return {"attempt": ctx.attempt, "function": ctx.function, "data": ctx.event.data, "name": ctx.event.name}

    with TestEnv(app) as env:
        event_id = env.send("go", {"k": 1})
        env.run_until_idle()
        [run] = app.runs(event_id=event_id)
        assert run.output == {"attempt": 1, "function": "keyed", "data": {"k": 1}, "name": "go"}
        assert keys == [f"{run.id}:charge"]


def test_a_step_error_caught_on_the_last_attempt_replays_as_step_error() -> None:
    app = stepwell.App("t")

    def charge() -> None:
        raise stepwell.NonRetriableError("card declined")

    @app.function("catcher", trigger=stepwell.on_event("go"), retries=0)
    def catcher(ctx: stepwell.Context) -> str:
        try:
            ctx.step.run("charge", charge)
        except (stepwell.NonRetriableError, stepwell.StepError) as err:
            kind = type(err).__name__
            outcome = ctx.step.run("record", lambda: f"declined: {kind}")
        ctx.step.sleep("then", "1m")
        return str(outcome)

    with TestEnv(app) as env:
        env.send("go")
        env.run_until_idle()
        run = app.get_run(app.runs()[0].id)
        assert run.status == RunStatus.COMPLETED
        assert run.output == "declined: NonRetriableError"
        assert run.step("charge").status == StepStatus.FAILED


@pytest.mark.parametrize("bad_id", ["", 7, "x" * 201])
def test_a_bad_step_id_fails_the_run_with_a_clear_message(bad_id: object) -> None:
    app = stepwell.App("t")

    @app.function("bad", trigger=stepwell.on_event("go"), retries=0)
    def bad(ctx: stepwell.Context) -> None:
        ctx.step.run(bad_id, lambda: 1)  # type: ignore[arg-type]

    with TestEnv(app) as env:
        env.send("go")
        env.run_until_idle()
        run = app.runs()[0]
        assert run.status == RunStatus.FAILED
        assert run.error is not None and "step id" in run.error.message
