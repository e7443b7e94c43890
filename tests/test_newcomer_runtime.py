"""A newcomer's mistakes meet a clear answer, and what a run records reads well (issue 9).

Forgotten `await` on a step, invoking another app's function, the error texts of fan-outs and
replayed steps, and the dispositions of debounced and cancelling events. Every backend.
"""

from __future__ import annotations

import asyncio

import stepwell
from stepwell.model.records import Disposition, RunStatus
from tests.conftest import EnvFactory


def test_a_forgotten_await_on_a_step_fails_the_run_naming_the_step(test_env: EnvFactory) -> None:
    app = stepwell.App("t")
    calls: list[str] = []

    @app.function("forgetful", trigger=stepwell.on_event("go"), retries=3)
    async def forgetful(ctx: stepwell.Context) -> str:
        ctx.step.run("charge-card", lambda: calls.append("charged"))  # no await: the step never runs
        return "done"

    with test_env(app) as env:
        env.send("go", {})
        env.run_until_idle()
        [run] = app.runs()
        assert run.status == RunStatus.FAILED and run.attempt == 1  # not retriable: the code must change
        assert run.error is not None and run.error.type == "StepNotAwaited"
        assert run.error.step == "charge-card"
        assert "ctx.step.run('charge-card') without await" in run.error.message
        assert calls == []
        assert [d.run_id for d in app.dead_letters()] == [run.id]


def test_awaited_and_gathered_steps_are_not_reported(test_env: EnvFactory) -> None:
    app = stepwell.App("t")

    @app.function("careful", trigger=stepwell.on_event("go"))
    async def careful(ctx: stepwell.Context) -> list[int]:
        first = await ctx.step.run("one", lambda: 1)
        pair = await asyncio.gather(ctx.step.run("two", lambda: 2), ctx.step.run("three", lambda: 3))
        task = asyncio.ensure_future(ctx.step.run("four", lambda: 4))
        return [first, *pair, await task]

    with test_env(app) as env:
        env.send("go", {})
        env.run_until_idle()
        [run] = app.runs()
        assert (run.status, run.output) == (RunStatus.COMPLETED, [1, 2, 3, 4])


def test_invoking_a_function_of_another_app_fails_the_parent_at_once_and_writes_no_child(
    test_env: EnvFactory,
) -> None:
    app, other = stepwell.App("main"), stepwell.App("other")

    @other.function("score")
    def score(ctx: stepwell.Context) -> int:
        return 1

    @app.function("parent", trigger=stepwell.on_event("go"), retries=3)
    def parent(ctx: stepwell.Context) -> object:
        return ctx.step.invoke("score", score, {"company": 1})

    with test_env(app) as env:
        env.send("go", {})
        env.run_until_idle()
        [run] = app.runs()  # no child run was written
        assert run.status == RunStatus.FAILED and run.attempt == 1
        assert run.error is not None and run.error.type == "ConfigurationError"
        assert "registered on app 'other'" in run.error.message


def test_a_failed_fan_out_names_its_type_and_step_once(test_env: EnvFactory) -> None:
    app = stepwell.App("t")

    @app.function("score", retries=0)
    def score(ctx: stepwell.Context) -> int:
        raise ValueError("no score")

    @app.function("score-all", trigger=stepwell.on_event("go"), retries=0)
    def score_all(ctx: stepwell.Context) -> object:
        return ctx.step.fan_out("score-all", score, [{"i": 1}, {"i": 2}]).total

    with test_env(app) as env:
        env.send("go", {})
        env.run_until_idle()
        [parent] = app.runs(function="score-all")
        assert parent.status == RunStatus.FAILED
        assert str(parent.error) == "FanOutFailed in step 'score-all': 2 of 2 children failed; 0 tolerated"
        [child, _] = app.runs(function="score")
        assert str(child.error) == "ValueError: no score"  # not tied to a step: no "in step"


def test_a_step_failure_replayed_is_recorded_as_the_step_error_itself(test_env: EnvFactory) -> None:
    app = stepwell.App("t")

    @app.function("f", trigger=stepwell.on_event("go"))
    def f(ctx: stepwell.Context) -> object:
        try:
            return ctx.step.run("fetch", _fail)
        except stepwell.NonRetriableError:  # the first time only: on replay the step raises StepError
            ctx.step.sleep("pause", "1m")
            raise

    with test_env(app) as env:
        env.send("go", {})
        env.run_until_idle()
        [run] = app.runs()
        assert run.status == RunStatus.FAILED
        assert str(app.get_run(run.id).error) == "NonRetriableError in step 'fetch': no audio at 7.mp3"


def _fail() -> None:
    raise stepwell.NonRetriableError("no audio at 7.mp3")


def test_the_events_a_debounce_replaced_read_debounced(test_env: EnvFactory) -> None:
    app = stepwell.App("t")

    @app.function(
        "index", trigger=stepwell.on_event("doc.saved"), debounce=stepwell.Debounce("5m", key="event.data.doc")
    )
    def index(ctx: stepwell.Context) -> object:
        return ctx.event.data

    with test_env(app) as env:
        first = env.send("doc.saved", {"doc": 1, "v": 1})
        second = env.send("doc.saved", {"doc": 1, "v": 2})
        env.run_until_idle()
        [run] = app.runs()
        assert run.output == {"doc": 1, "v": 2}
        assert app.event(first).disposition == Disposition.DEBOUNCED
        assert app.event(first).skipped[0][1:] == ("debounced", run.id)
        assert app.event(second).disposition == Disposition.STARTED
        assert app.event(second).run_ids == (run.id,)


def test_an_event_that_cancels_runs_through_cancel_on_reads_cancelled(test_env: EnvFactory) -> None:
    app = stepwell.App("t")

    @app.function(
        "ship",
        trigger=stepwell.on_event("order.placed"),
        cancel_on=stepwell.CancelOn(event="order.cancelled", match="data.order"),
    )
    def ship(ctx: stepwell.Context) -> None:
        ctx.step.sleep("wait", "1h")

    with test_env(app) as env:
        env.send("order.placed", {"order": 7})
        env.run_until_idle(skip_time=False)
        cancelling = env.send("order.cancelled", {"order": 7})
        [run] = app.runs()
        assert run.status == RunStatus.CANCELLED
        assert app.event(cancelling).disposition == Disposition.CANCELLED
        assert app.event(env.send("order.cancelled", {"order": 8})).disposition == Disposition.NO_MATCH


def test_every_error_type_a_run_records_is_importable_from_stepwell() -> None:
    for name in ("RunTimeout", "LeaseExpired", "Cancelled", "StepNotAwaited", "FanOutFailed", "UnknownFunction"):
        assert issubclass(getattr(stepwell, name), stepwell.StepwellError), name


def test_send_with_a_name_that_is_not_a_str_says_so_and_stores_nothing(test_env: EnvFactory) -> None:
    app = stepwell.App("t")
    with test_env(app):
        for wrong in (42, None, {"name": "x"}):
            try:
                app.send(wrong, {"id": 1})  # type: ignore[arg-type]
            except stepwell.EventRejected as err:
                assert "the event name must be a str" in str(err) and type(wrong).__name__ in str(err)
            else:
                raise AssertionError(f"send({wrong!r}, ...) was accepted")
        assert app.runs() == []
