"""Push mode end to end: real web apps (FastAPI under uvicorn, Flask under waitress) on loopback, a real
dispatcher, both stores. The web app registers itself; the dispatcher claims, pushes, settles."""

from __future__ import annotations

from pathlib import Path

import pytest

import stepwell
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
