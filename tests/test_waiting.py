"""wait_for_event, invoke, send_event and parallel steps, on the virtual clock."""

from __future__ import annotations

import asyncio

import pytest

import stepwell
from stepwell.model.records import Disposition, RunStatus, StepStatus
from stepwell.runtime.steps import StepLedger
from tests.conftest import EnvFactory


def _approval_app() -> tuple[stepwell.App, list[object]]:
    app = stepwell.App("t")
    seen: list[object] = []

    @app.function("publish", trigger=stepwell.on_event("sermon.transcribed"))
    def publish(ctx: stepwell.Context) -> object:
        approved = ctx.step.wait_for_event("approval", event="sermon.approved", match="data.sermon_id", timeout="1d")
        ctx.step.run("record", lambda: seen.append(approved.data if approved else None))
        return approved.data if approved else "timed out"

    return app, seen


def test_a_waiting_run_resumes_with_the_matching_event_only(test_env: EnvFactory) -> None:
    app, seen = _approval_app()
    with test_env(app) as env:
        env.send("sermon.transcribed", {"sermon_id": 7})
        env.run_until_idle(skip_time=False)
        [run] = app.runs()
        assert run.status == RunStatus.WAITING
        other = env.send("sermon.approved", {"sermon_id": 8, "by": "x"})
        assert app.event(other).disposition == Disposition.NO_MATCH
        env.run_until_idle(skip_time=False)
        assert app.get_run(run.id).status == RunStatus.WAITING
        env.advance(hours=2)
        matching = env.send("sermon.approved", {"sermon_id": 7, "by": "editor"})
        assert app.event(matching).disposition == Disposition.RESUMED
        env.run_until_idle(skip_time=False)
        done = app.get_run(run.id)
        assert done.status == RunStatus.COMPLETED
        assert done.output == {"sermon_id": 7, "by": "editor"}
        assert seen == [{"sermon_id": 7, "by": "editor"}]
        assert done.step("approval").output["id"] == matching


def test_a_wait_times_out_with_none(test_env: EnvFactory) -> None:
    app, seen = _approval_app()
    with test_env(app) as env:
        start = env.clock.now()
        env.send("sermon.transcribed", {"sermon_id": 7})
        env.run_until_idle()
        [run] = app.runs()
        assert run.output == "timed out" and seen == [None]
        assert env.clock.now() - start >= __import__("datetime").timedelta(days=1)
        env.send("sermon.approved", {"sermon_id": 7})  # too late: resumes nothing
        env.run_until_idle()
        assert app.get_run(run.id).output == "timed out"


def test_an_event_sent_before_the_wait_began_does_not_count(test_env: EnvFactory) -> None:
    app, _ = _approval_app()
    with test_env(app) as env:
        env.send("sermon.approved", {"sermon_id": 7})
        env.send("sermon.transcribed", {"sermon_id": 7})
        env.run_until_idle()
        assert app.runs(function="publish")[0].output == "timed out"


def test_one_event_resumes_every_waiter_it_matches(test_env: EnvFactory) -> None:
    app, seen = _approval_app()
    with test_env(app) as env:
        env.send("sermon.transcribed", {"sermon_id": 7})
        env.send("sermon.transcribed", {"sermon_id": 7})
        env.send("sermon.transcribed", {"sermon_id": 9})
        env.run_until_idle(skip_time=False)
        env.send("sermon.approved", {"sermon_id": 7})
        env.run_until_idle(skip_time=False)
        statuses = sorted(r.status.value for r in app.runs())
        assert statuses == ["completed", "completed", "waiting"]
        assert len(seen) == 2


def test_an_if_condition_in_cel_filters_events(test_env: EnvFactory) -> None:
    app = stepwell.App("t")

    @app.function("big-orders", trigger=stepwell.on_event("cart.opened"))
    def big_orders(ctx: stepwell.Context) -> object:
        paid = ctx.step.wait_for_event(
            "paid",
            event="order.paid",
            if_="async.data.user == event.data.user && async.data.total > 100",
            timeout="1h",
        )
        return paid.data["total"] if paid else None

    with test_env(app) as env:
        env.send("cart.opened", {"user": "ana"})
        env.run_until_idle(skip_time=False)
        env.send("order.paid", {"user": "ana", "total": 50})
        env.send("order.paid", {"user": "bob", "total": 500})
        env.send("order.paid", {"user": "ana"})
        env.run_until_idle(skip_time=False)
        assert app.runs()[0].status == RunStatus.WAITING
        env.send("order.paid", {"user": "ana", "total": 150})
        env.run_until_idle(skip_time=False)
        assert app.runs()[0].output == 150


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"event": "x", "if_": "async.data.total >"}, "invalid CEL"),
        ({"event": "x", "match": "data.missing"}, "no value at 'data.missing'"),
        ({"event": "x", "match": "data.x; drop"}, "dotted path"),
        ({"event": "bad name", "match": "data.x"}, "not a valid name"),
        ({"event": "x", "timeout": "soon"}, "timeout"),
    ],
)
def test_bad_wait_options_fail_the_run_with_a_clear_message(
    test_env: EnvFactory, options: dict[str, str], message: str
) -> None:
    app = stepwell.App("t")

    @app.function("f", trigger=stepwell.on_event("go"), retries=3)
    def f(ctx: stepwell.Context) -> None:
        ctx.step.wait_for_event("w", **options)  # type: ignore[arg-type]

    with test_env(app) as env:
        env.send("go", {"x": 1})
        assert env.run_until_idle() == 1
        run = app.runs()[0]
        assert run.status == RunStatus.FAILED
        assert run.error is not None and message in run.error.message


def test_invoke_returns_the_child_output_and_raises_its_failure(test_env: EnvFactory) -> None:
    app = stepwell.App("t")

    @app.function("square")
    def square(ctx: stepwell.Context) -> int:
        if ctx.event.data["n"] < 0:
            raise stepwell.NonRetriableError("negative")
        return int(ctx.event.data["n"]) ** 2

    @app.function("parent", trigger=stepwell.on_event("go"), retries=0)
    def parent(ctx: stepwell.Context) -> object:
        ok = ctx.step.invoke("ok", square, {"n": 4})
        try:
            ctx.step.invoke("bad", square, {"n": -1})
        except stepwell.InvokeError as err:
            return {"ok": ok, "error": err.error_message}
        return None

    with test_env(app) as env:
        env.send("go")
        env.run_until_idle()
        [run] = app.runs(function="parent")
        assert run.output == {"ok": 16, "error": "negative"}
        children = app.runs(parent=run.id)
        assert sorted(c.status.value for c in children) == ["completed", "failed"]
        assert all(c.event_id is None for c in children)


def test_invoke_times_out_and_cancels_the_child(test_env: EnvFactory) -> None:
    app = stepwell.App("t")

    @app.function("slow")
    def slow(ctx: stepwell.Context) -> None:
        ctx.step.sleep("long", "2h")

    @app.function("parent", trigger=stepwell.on_event("go"), retries=0)
    def parent(ctx: stepwell.Context) -> str:
        try:
            ctx.step.invoke("call", slow, {}, timeout="1h")
        except stepwell.InvokeTimeout:
            return "gave up"
        return "finished"

    with test_env(app) as env:
        env.send("go")
        env.run_until_idle()
        [run] = app.runs(function="parent")
        assert run.output == "gave up"
        [child] = app.runs(parent=run.id)
        assert child.status == RunStatus.CANCELLED


def test_send_event_happens_once_even_when_the_attempt_dies_after_sending(
    test_env: EnvFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = stepwell.App("t")
    received: list[object] = []

    @app.function("listener", trigger=stepwell.on_event("invoice.sent"))
    def listener(ctx: stepwell.Context) -> None:
        received.append(ctx.event.data)

    @app.function("sender", trigger=stepwell.on_event("go"), retries=2)
    def sender(ctx: stepwell.Context) -> str:
        return ctx.step.send_event("announce", "invoice.sent", {"invoice": 1})

    original = StepLedger.record
    crashes = {"left": 1}

    def crash_once(self: StepLedger, write: object) -> object:
        if getattr(write, "kind", None) == "send" and crashes["left"]:
            crashes["left"] -= 1
            raise ConnectionError("worker lost the database right after sending")
        return original(self, write)  # type: ignore[arg-type]

    monkeypatch.setattr(StepLedger, "record", crash_once)
    with test_env(app) as env:
        env.send("go")
        env.run_until_idle()
        [run] = app.runs(function="sender")
        assert run.status == RunStatus.COMPLETED and run.attempt == 2
        assert received == [{"invoice": 1}]
        assert app.event(run.output).name == "invoice.sent"


def test_parallel_steps_in_async_functions_have_stable_ids_and_memoize(test_env: EnvFactory) -> None:
    app = stepwell.App("t")
    calls: list[str] = []

    async def fetch(name: str) -> str:
        calls.append(name)
        await asyncio.sleep(0.01 if name == "a" else 0)
        return name.upper()

    @app.function("parallel", trigger=stepwell.on_event("go"))
    async def parallel(ctx: stepwell.Context) -> object:
        results = await asyncio.gather(
            ctx.step.run("fetch", fetch, "a"), ctx.step.run("fetch", fetch, "b"), ctx.step.run("other", fetch, "c")
        )
        await ctx.step.sleep("nap", "1m")
        return list(results)

    with test_env(app) as env:
        env.send("go")
        env.run_until_idle()
        run = app.get_run(app.runs()[0].id)
        assert run.output == ["A", "B", "C"]
        assert [s.id for s in run.steps] == ["fetch", "fetch#2", "other", "nap"]
        assert sorted(calls) == ["a", "b", "c"], "the replay after the sleep ran no step again"
        assert all(s.status == StepStatus.COMPLETED for s in run.steps)
