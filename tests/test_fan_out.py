"""Fan-out as a job set: chunked children, counts, ordered results, tolerance, redrive, reduce once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest

import stepwell
from stepwell.model.records import RunStatus
from stepwell.store.base import Complete, Lease
from tests.conftest import EnvFactory


def _scoring_app(*, tolerate: float = 0, broken: set[int] | None = None) -> tuple[stepwell.App, list[object]]:
    app = stepwell.App("t")
    reduced: list[object] = []
    broken = broken if broken is not None else set()

    @app.function("score", retries=1)
    def score(ctx: stepwell.Context) -> int:
        company = int(ctx.event.data["company"])
        if company in broken:
            raise ValueError(f"no data for company {company}")
        return company * 10

    @app.function("monthly", trigger=stepwell.on_event("month.closed"), retries=0)
    def monthly(ctx: stepwell.Context) -> object:
        count = int(ctx.event.data["companies"])
        scores = ctx.step.fan_out("score-all", score, ({"company": i} for i in range(count)), tolerate=tolerate)
        report = ctx.step.run("report", lambda: reduced.append(list(scores.results())) or len(reduced))
        return {"report": report, "completed": scores.completed, "failed": scores.failed}

    return app, reduced


def test_children_run_and_the_reduce_sees_every_result_in_item_order(test_env: EnvFactory) -> None:
    app, reduced = _scoring_app()
    with test_env(app) as env:
        env.send("month.closed", {"companies": 2500})
        env.run_until_idle()
        [parent] = app.runs(function="monthly")
        assert parent.status == RunStatus.COMPLETED
        assert parent.output == {"report": 1, "completed": 2500, "failed": 0}
        assert reduced == [[i * 10 for i in range(2500)]]
        children = app.runs(parent=parent.id, limit=5000)
        assert len(children) == 2500 and all(c.event_id is None for c in children)
        assert app.runs(event_id=parent.event_id) == [parent]


def test_progress_is_visible_while_children_run(test_env: EnvFactory) -> None:
    app, _ = _scoring_app()
    with test_env(app) as env:
        env.send("month.closed", {"companies": 10})
        env.run_until_idle(max_runs=1)
        [parent] = app.runs(function="monthly")
        progress = app.fan_out_progress(parent.id, "score-all")
        assert (progress.total, progress.queued, progress.completed, progress.done) == (10, 10, 0, False)
        env.run_until_idle(max_runs=4)
        progress = app.fan_out_progress(parent.id, "score-all")
        assert (progress.completed, progress.queued) == (4, 6)


def test_zero_items_finish_at_once(test_env: EnvFactory) -> None:
    app, reduced = _scoring_app()
    with test_env(app) as env:
        env.send("month.closed", {"companies": 0})
        env.run_until_idle()
        assert app.runs(function="monthly")[0].output == {"report": 1, "completed": 0, "failed": 0}
        assert reduced == [[]]


def test_a_failed_child_fails_the_parent_without_tolerance_and_redrive_completes_it(test_env: EnvFactory) -> None:
    broken = {3}
    app, reduced = _scoring_app(broken=broken)
    with test_env(app) as env:
        env.send("month.closed", {"companies": 6})
        env.run_until_idle()
        [parent] = app.runs(function="monthly")
        assert parent.status == RunStatus.FAILED
        assert parent.error is not None and "1 of 6 children failed; 0 tolerated" in parent.error.message
        assert reduced == []
        dead = {d.run_id for d in app.dead_letters()}
        assert parent.id in dead and len(dead) == 2
        broken.clear()
        redriven = app.redrive(fan_out=parent.id)
        assert set(redriven) == dead
        assert app.redrive(fan_out=parent.id) == []
        env.run_until_idle()
        assert app.get_run(parent.id).status == RunStatus.COMPLETED
        assert reduced == [[i * 10 for i in range(6)]]
        assert len(app.runs(parent=parent.id)) == 6, "redrive re-created no child"


@pytest.mark.parametrize("tolerate", [1, 0.2])
def test_tolerated_failures_let_the_parent_continue(test_env: EnvFactory, tolerate: float) -> None:
    app, reduced = _scoring_app(tolerate=tolerate, broken={2})
    with test_env(app) as env:
        env.send("month.closed", {"companies": 5})
        env.run_until_idle()
        [parent] = app.runs(function="monthly")
        assert parent.output == {"report": 1, "completed": 4, "failed": 1}
        assert reduced == [[0, 10, None, 30, 40]]


def test_a_parent_that_dies_while_creating_children_resumes_without_duplicates(test_env: EnvFactory) -> None:
    app = stepwell.App("t")
    dies = {"left": 1}

    @app.function("child")
    def child(ctx: stepwell.Context) -> int:
        return int(ctx.event.data)

    def items() -> Iterator[int]:
        for i in range(2500):
            if i == 1700 and dies["left"]:
                dies["left"] -= 1
                raise SystemExit("the parent's worker died while creating children")
            yield i

    @app.function("parent", trigger=stepwell.on_event("go"), retries=2)
    def parent(ctx: stepwell.Context) -> int:
        done = ctx.step.fan_out("all", child, items())
        return sum(x for x in done.results())

    with test_env(app) as env:
        env.send("go")
        env.run_until_idle()
        [run] = app.runs(function="parent")
        assert run.status == RunStatus.COMPLETED and run.attempt == 2
        assert run.output == sum(range(2500))
        children = app.runs(parent=run.id, limit=10_000)
        assert len(children) == len({c.id for c in children}) == 2500


def test_a_bad_item_or_tolerance_fails_the_parent_clearly(test_env: EnvFactory) -> None:
    app = stepwell.App("t")

    @app.function("child")
    def child(ctx: stepwell.Context) -> None:
        return None

    @app.function("parent", trigger=stepwell.on_event("go"), retries=3)
    def parent(ctx: stepwell.Context) -> None:
        ctx.step.fan_out("all", child, [1, {2, 3}] if ctx.event.data["bad"] == "item" else [1], tolerate=1.5)

    with test_env(app) as env:
        env.send("go", {"bad": "tolerance"})
        env.run_until_idle()
        assert "tolerate=1.5" in str(app.runs()[0].error)


def test_the_last_two_children_finishing_at_once_wake_the_parent_once(test_env: EnvFactory) -> None:
    app = stepwell.App("t")
    reduces: list[int] = []

    @app.function("child")
    def child(ctx: stepwell.Context) -> int:
        return 1

    @app.function("parent", trigger=stepwell.on_event("go"))
    def parent(ctx: stepwell.Context) -> int:
        done = ctx.step.fan_out("pair", child, [1, 2])
        ctx.step.run("reduce", lambda: reduces.append(done.completed))
        return done.completed

    with test_env(app) as env:
        env.send("go")
        env.run_until_idle(max_runs=1)
        claimed = env.store.claim_runs(worker_id="w", limit=10, lease=timedelta(seconds=30))
        assert sorted(c.function for c in claimed) == ["child", "child"]
        barrier = threading.Barrier(2)

        def finish(lease: Lease) -> None:
            barrier.wait()
            env.store.settle_runs([Complete(lease, b"1")])

        threads = [threading.Thread(target=finish, args=(c.lease,)) for c in claimed]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        env.run_until_idle()
        assert reduces == [2]
        assert env.store.wake_finished_fan_outs() == 0
