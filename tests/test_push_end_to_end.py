"""Push mode end to end: real web apps (FastAPI under uvicorn, Flask under waitress) on loopback, a real
dispatcher, both stores. The web app registers itself; the dispatcher claims, pushes, settles."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest

import stepwell
from stepwell.model.records import RunStatus
from tests.push.harness import DispatcherThread, WebApp, registered, wait_until


def waiting_on(app: stepwell.App, run_id: str, step_id: str) -> bool:
    return any(step.id == step_id and step.status == "waiting" for step in app.get_run(run_id).steps)


@pytest.fixture(params=["fastapi", "flask"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_steps_sleep_invoke_wait_and_send_event(kind: str, database_url: str, tmp_path: Path) -> None:
    web = WebApp(kind, database_url, tmp_path).start()
    producer = stepwell.App("producer", database_url=database_url)
    try:
        wait_until(lambda: registered(producer), what="the web app's registration")
        with DispatcherThread(database_url):
            event_id = producer.send("order.placed", {"order": "o-1", "amount": 21})
            [run] = producer.runs(event_id=event_id)
            wait_until(lambda: waiting_on(producer, run.id, "approval"), what="the approval wait")
            producer.send("order.approved", {"order": "o-1"})
            done = producer.wait(run.id, timeout=30)
            assert done.status == "completed", done.error
            assert done.output == {"total": 42, "receipt": "R-42", "approved": True}
            assert [step.id for step in done.steps] == ["price", "slow", "cool-down", "receipt", "approval", "notify"]
            [notify] = [step for step in done.steps if step.id == "notify"]
            assert producer.event(notify.output).name == "order.done"
        assert (web.executions("price"), web.executions("slow"), web.executions("number")) == (1, 1, 1)
    finally:
        web.stop()
        producer.close()


FAN_OUT = int(os.environ.get("STEPWELL_PUSH_FAN_OUT", "200"))  # 2,000 with STEPWELL_PUSH_FAN_OUT=2000


def test_fan_out_children_are_pushed_and_the_parent_completes(database_url: str, tmp_path: Path) -> None:
    web = WebApp("fastapi", database_url, tmp_path).start()
    producer = stepwell.App("producer", database_url=database_url)
    try:
        wait_until(lambda: registered(producer), what="the web app's registration")
        with DispatcherThread(database_url, per_endpoint=32, concurrency=64):
            event_id = producer.send("scores.requested", {"count": FAN_OUT})
            [run] = producer.runs(event_id=event_id)
            done = producer.wait(run.id, timeout=120)
            assert done.status == "completed", done.error
            assert done.output == {"total": FAN_OUT, "completed": FAN_OUT}
            children = producer.runs(parent=run.id, limit=FAN_OUT + 1)
            assert len(children) == FAN_OUT and {child.status for child in children} == {RunStatus.COMPLETED}
            assert sorted(child.output for child in children) == sorted(n * 10 for n in range(FAN_OUT))
    finally:
        web.stop()
        producer.close()


def test_a_pushed_parent_reduces_its_childrens_results_as_a_pulled_one_does(database_url: str, tmp_path: Path) -> None:
    web = WebApp("fastapi", database_url, tmp_path).start()
    producer = stepwell.App("producer", database_url=database_url)
    try:
        wait_until(lambda: registered(producer), what="the web app's registration")
        with DispatcherThread(database_url, per_endpoint=16, concurrency=32):
            event_id = producer.send("reduce.requested", {"count": 30})
            runs = {run.function: run for run in producer.runs(event_id=event_id)}
            done = producer.wait(runs["reduce"].id, timeout=60)
            assert done.status == "completed", done.error
            # 30 scores of n * 10, read in pages of 7; the 31st child failed (tolerated) and reads as None
            assert done.output == {"sum": 4350, "failed": [30], "last": [290, None]}
            assert [step.id for step in done.steps] == ["all", "sum"]
            async_done = producer.wait(runs["reduce-async"].id, timeout=60)
            assert (async_done.status, async_done.output) == ("completed", 4350), async_done.error
    finally:
        web.stop()
        producer.close()


def test_ctx_log_lines_of_a_pushed_run_are_stored_once_across_its_replays(
    kind: str, database_url: str, tmp_path: Path
) -> None:
    web = WebApp(kind, database_url, tmp_path).start()
    producer = stepwell.App("producer", database_url=database_url)
    try:
        wait_until(lambda: registered(producer), what="the web app's registration")
        with DispatcherThread(database_url):
            [run] = producer.runs(event_id=producer.send("chatty.requested", {"who": "ada"}))
            done = producer.wait(run.id, timeout=30)
            assert (done.status, done.output) == ("completed", 3), done.error
        # three requests replayed "starting for ada" three times and "between" twice: each is stored once
        lines = producer.run_logs(run.id).lines
        assert [(line.level, line.message, line.step) for line in lines] == [
            ("INFO", "starting for ada", None),
            ("INFO", "in a", "a"),
            ("INFO", "between", None),
            ("WARNING", "in b", "b"),
            ("INFO", "done", None),
        ]
    finally:
        web.stop()
        producer.close()


def test_retries_then_dead_letter_then_redrive(database_url: str, tmp_path: Path) -> None:
    fixed = tmp_path / "fixed"
    web = WebApp("flask", database_url, tmp_path, PUSH_FIXED=str(fixed)).start()
    producer = stepwell.App("producer", database_url=database_url)
    try:
        wait_until(lambda: registered(producer), what="the web app's registration")
        with DispatcherThread(database_url):
            [run] = producer.runs(event_id=producer.send("flaky.requested", {}))
            failed = producer.wait(run.id, timeout=30)
            assert failed.status == "failed" and failed.attempt == 2  # retries=1
            assert "not fixed yet" in str(failed.error)
            assert [letter.run_id for letter in producer.dead_letters(function="flaky")] == [run.id]
            assert web.executions("boom") == 2
            fixed.touch()
            producer.redrive([run.id])
            redriven = producer.wait(run.id, timeout=30)
            assert (redriven.status, redriven.output) == ("completed", "fixed")
            assert web.executions("boom") == 3
    finally:
        web.stop()
        producer.close()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["fastapi", "flask"])
def test_sigkill_mid_request_retries_on_the_restarted_app_without_repeating_steps(
    kind: str, database_url: str, tmp_path: Path
) -> None:
    web = WebApp(kind, database_url, tmp_path, PUSH_SLOW_STEP="30").start()
    producer = stepwell.App("producer", database_url=database_url)
    try:
        wait_until(lambda: registered(producer), what="the web app's registration")
        with DispatcherThread(database_url, breaker_threshold=100):
            [run] = producer.runs(event_id=producer.send("order.placed", {"order": "o-9", "amount": 5}))
            wait_until(lambda: web.executions("price") == 1, what="the first step")
            wait_until(lambda: any(s.id == "price" for s in producer.get_run(run.id).steps), what="price stored")
            web.kill()  # in the middle of the request that runs the slow step
            web.env["PUSH_SLOW_STEP"] = "0"
            web.start()
            wait_until(lambda: waiting_on(producer, run.id, "approval"), timeout=60, what="the approval wait")
            producer.send("order.approved", {"order": "o-9"})
            done = producer.wait(run.id, timeout=30)
            assert done.status == "completed", done.error
            assert done.attempt == 2  # the killed request counted as a failed attempt
        assert web.executions("price") == 1  # completed before the kill: never executed again
        assert web.executions("slow") == 1  # killed mid-step (no ledger line), then run once on the new app
    finally:
        web.stop()
        producer.close()


def test_the_circuit_opens_on_a_dead_endpoint_runs_wait_saying_why_and_none_is_lost(
    database_url: str, tmp_path: Path
) -> None:
    web = WebApp("fastapi", database_url, tmp_path).start()
    producer = stepwell.App("producer", database_url=database_url)
    try:
        wait_until(lambda: registered(producer), what="the web app's registration")
        web.kill()
        with DispatcherThread(database_url, breaker_threshold=2, breaker_cooldown=timedelta(seconds=1)):
            runs = [producer.runs(event_id=producer.send("scores.requested", {"count": 1}))[0] for _ in range(5)]

            def reason() -> str:
                return producer.get_run(runs[-1].id).waiting_reason or ""

            wait_until(lambda: "unavailable" in reason(), what="the circuit's waiting reason")
            assert reason().startswith(f"endpoint {web.url} unavailable until ")
            assert all(producer.get_run(run.id).attempt == 1 for run in runs)  # refused connections cost no attempt
            web.start()
            for run in runs:
                assert producer.wait(run.id, timeout=60).status == "completed"
            wait_until(lambda: not producer.store.push_circuits(), what="the circuit to close")
    finally:
        web.stop()
        producer.close()


def test_the_lease_is_heartbeated_while_a_request_is_in_flight(database_url: str, tmp_path: Path) -> None:
    web = WebApp("fastapi", database_url, tmp_path, PUSH_SLOW_STEP="3").start()
    producer = stepwell.App("producer", database_url=database_url)
    try:
        wait_until(lambda: registered(producer), what="the web app's registration")
        with DispatcherThread(database_url, lease=timedelta(seconds=1)):
            [run] = producer.runs(event_id=producer.send("order.placed", {"order": "o-2", "amount": 1}))
            wait_until(lambda: waiting_on(producer, run.id, "approval"), timeout=60, what="the approval wait")
            assert producer.get_run(run.id).attempt == 1  # a 3 s step under a 1 s lease: never rescued
        assert web.executions("slow") == 1
    finally:
        web.stop()
        producer.close()


def test_the_push_example_runs(database_url: str) -> None:
    from examples import push_mode

    assert push_mode.demo(database_url) == {"total": 50, "completed": 50, "failed": 0}
    assert push_mode.reports[-1] == {"total": 50, "completed": 50, "failed": 0}
