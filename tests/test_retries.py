"""Retries, backoff with jitter, non-retriable errors, dead letters, redrive, on_failure, replay, cancel."""

from __future__ import annotations

import itertools
import random
from datetime import timedelta

import pytest

import stepwell
from stepwell.errors import StoreUnavailable
from stepwell.model.records import FailureReason, RunStatus, StepStatus
from stepwell.model.retry import Backoff
from stepwell.testing import TestEnv


def test_backoff_grows_exponentially_within_jitter_and_is_capped() -> None:
    backoff = Backoff()
    rand = random.Random(7)
    for attempt, nominal in [(1, 1), (2, 2), (3, 4), (4, 8), (10, 512), (11, 600), (30, 600)]:
        for _ in range(200):
            delay = backoff.delay(attempt, rand).total_seconds()
            assert nominal * 0.8 <= delay <= nominal * 1.2


def test_an_always_failing_run_is_retried_on_schedule_then_dead_lettered() -> None:
    app = stepwell.App("t")
    attempts_at: list[float] = []

    @app.function("doomed", trigger=stepwell.on_event("go"), retries=3)
    def doomed(ctx: stepwell.Context) -> None:
        attempts_at.append((env.clock.now() - start).total_seconds())
        raise ValueError(f"attempt {ctx.attempt} failed")

    with TestEnv(app) as env:
        start = env.clock.now()
        env.send("go")
        env.run_until_idle()
        assert len(attempts_at) == 4
        gaps = [b - a for a, b in itertools.pairwise(attempts_at)]
        for gap, nominal in zip(gaps, [1, 2, 4], strict=True):
            assert nominal * 0.8 <= gap <= nominal * 1.2
        run = app.get_run(app.runs()[0].id)
        assert run.status == RunStatus.FAILED and run.attempt == 4
        assert [e.message for e in run.errors] == [f"attempt {n} failed" for n in (1, 2, 3, 4)]
        [dead] = app.dead_letters()
        assert (dead.run_id, dead.reason, dead.attempts) == (run.id, FailureReason.RETRIES_EXHAUSTED, 4)
        assert "attempt 4 failed" in str(run.error)


def test_non_retriable_error_fails_at_once() -> None:
    app = stepwell.App("t")
    calls = []

    @app.function("strict", trigger=stepwell.on_event("go"), retries=5)
    def strict(ctx: stepwell.Context) -> None:
        calls.append(1)
        raise stepwell.NonRetriableError("bad input, retrying will not help")

    with TestEnv(app) as env:
        env.send("go")
        env.run_until_idle()
        assert calls == [1]
        [dead] = app.dead_letters()
        assert dead.reason == FailureReason.NON_RETRIABLE
        assert dead.error.message == "bad input, retrying will not help"


def test_retry_after_error_sets_the_next_attempt_time() -> None:
    app = stepwell.App("t")
    seen: list[float] = []

    @app.function("polite", trigger=stepwell.on_event("go"), retries=1)
    def polite(ctx: stepwell.Context) -> str:
        seen.append((env.clock.now() - start).total_seconds())
        if ctx.attempt == 1:
            raise stepwell.RetryAfterError("90s", "rate limited upstream")
        return "ok"

    with TestEnv(app) as env:
        start = env.clock.now()
        env.send("go")
        env.run_until_idle()
        assert seen == [0.0, 90.0]
        assert app.runs()[0].output == "ok"


def test_on_failure_runs_once_with_the_failed_run_and_its_error() -> None:
    app = stepwell.App("t")
    handled: list[dict[str, object]] = []

    def alert(ctx: stepwell.Context) -> None:
        handled.append(ctx.event.data)

    @app.function("fragile", trigger=stepwell.on_event("go"), retries=1, on_failure=alert)
    def fragile(ctx: stepwell.Context) -> None:
        raise KeyError("missing")

    with TestEnv(app) as env:
        env.send("go", {"order": 9})
        env.run_until_idle()
        [failed] = app.runs(function="fragile")
        assert len(handled) == 1
        data = handled[0]
        assert data["run_id"] == failed.id and data["function"] == "fragile"
        assert data["event"] == {"name": "go", "data": {"order": 9}}
        assert "missing" in data["error"]["message"]  # type: ignore[index]


def test_redrive_reruns_from_the_failed_step_keeping_completed_steps() -> None:
    app = stepwell.App("t")
    calls: list[str] = []
    broken = {"yes": True}

    def step_two() -> str:
        calls.append("two")
        if broken["yes"]:
            raise RuntimeError("downstream is down")
        return "fixed"

    @app.function("redrivable", trigger=stepwell.on_event("go"), retries=0)
    def redrivable(ctx: stepwell.Context) -> str:
        ctx.step.run("one", lambda: calls.append("one"))
        return ctx.step.run("two", step_two)

    with TestEnv(app) as env:
        env.send("go")
        env.run_until_idle()
        [dead] = app.dead_letters()
        broken["yes"] = False
        assert app.redrive([dead.run_id]) == [dead.run_id]
        assert app.redrive([dead.run_id]) == []
        env.run_until_idle()
        run = app.get_run(dead.run_id)
        assert (run.status, run.output) == (RunStatus.COMPLETED, "fixed")
        assert calls == ["one", "two", "two"]
        assert app.dead_letters() == []
        assert run.step("one").status == StepStatus.COMPLETED


def test_replay_starts_a_new_run_from_the_same_input() -> None:
    app = stepwell.App("t")

    @app.function("echo", trigger=stepwell.on_event("go"))
    def echo(ctx: stepwell.Context) -> object:
        return ctx.event.data

    with TestEnv(app) as env:
        env.send("go", {"v": 1})
        env.run_until_idle()
        [first] = app.runs()
        second_id = app.replay(first.id)
        env.run_until_idle()
        second = app.get_run(second_id)
        assert second.replay_of == first.id and second.output == {"v": 1} and second.id != first.id


def test_cancel_a_sleeping_run() -> None:
    app = stepwell.App("t")

    @app.function("sleepy", trigger=stepwell.on_event("go"))
    def sleepy(ctx: stepwell.Context) -> None:
        ctx.step.sleep("long", "7d")

    with TestEnv(app) as env:
        env.send("go")
        env.run_until_idle(skip_time=False)
        [run] = app.runs()
        assert app.cancel(run.id) is True
        assert app.cancel(run.id) is False
        env.run_until_idle()
        assert app.get_run(run.id).status == RunStatus.CANCELLED


def test_direct_enqueue_runs_without_an_event() -> None:
    app = stepwell.App("t")

    @app.function("direct")
    def direct(ctx: stepwell.Context) -> object:
        return {"got": ctx.event.data, "event": ctx.event.name}

    with TestEnv(app) as env:
        run_id = direct.enqueue({"sermon_id": 7})
        env.run_until_idle()
        run = app.get_run(run_id)
        assert run.output == {"got": {"sermon_id": 7}, "event": "stepwell/function.enqueued"}
        assert run.event_id is None


def test_a_run_of_a_function_the_worker_does_not_define_waits_for_a_worker_that_does() -> None:
    """Workers claim only their app's functions (the registry may list other apps' and older versions')."""
    producer = stepwell.App("t")

    @producer.function("only-here", trigger=stepwell.on_event("go"), retries=1)
    def only_here(ctx: stepwell.Context) -> None:
        return None

    consumer = stepwell.App("t")
    with TestEnv(producer) as env:
        env.send("go")
        consumer.bind(env.store, env.clock)
        env.app = consumer
        assert env.run_until_idle() == 0
        assert producer.dead_letters() == []
        [run] = consumer.runs(function="only-here")
        assert run.status is stepwell.RunStatus.QUEUED
        consumer.register()  # app "t" redeployed without the function: the run says why it waits
        reason = consumer.get_run(run.id).waiting_reason
        assert reason is not None and reason.startswith("no worker serves function only-here since ")


@pytest.mark.parametrize("retries", [-1, 1.5, "3", True])
def test_bad_retries_are_refused_at_registration(retries: object) -> None:
    app = stepwell.App("t")
    with pytest.raises(stepwell.StepwellError, match="retries"):
        app.function("f", retries=retries)  # type: ignore[arg-type]


def test_backoff_bounds_are_checked() -> None:
    with pytest.raises(stepwell.StepwellError, match="factor"):
        Backoff(factor=0.5)
    with pytest.raises(stepwell.StepwellError, match="cap"):
        Backoff(base=timedelta(seconds=10), cap=timedelta(seconds=1))


def test_a_store_outage_under_an_attempt_gives_the_run_back_without_counting_an_attempt() -> None:
    app = stepwell.App("t")
    calls: list[int] = []

    @app.function("fragile-db", trigger=stepwell.on_event("go"), retries=0)
    def fragile_db(ctx: stepwell.Context) -> int:
        ctx.step.run("work", lambda: calls.append(ctx.attempt))
        return len(calls)

    with TestEnv(app) as env:
        original = env.store.record_step
        outages = {"left": 1}

        def flaky(*args: object, **kwargs: object) -> object:
            if outages["left"]:
                outages["left"] -= 1
                raise StoreUnavailable("record_step: the connection was closed")
            return original(*args, **kwargs)  # type: ignore[arg-type]

        env.store.record_step = flaky  # type: ignore[method-assign]
        env.send("go")
        env.run_until_idle()
        run = app.get_run(app.runs()[0].id)
        assert (run.status, run.attempt, run.output) == (RunStatus.COMPLETED, 1, 2), "no attempt was charged"
        assert calls == [1, 1] and app.dead_letters() == []
