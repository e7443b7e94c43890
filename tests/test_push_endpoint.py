"""The web app's endpoint over real HTTP: signed requests only, signed answers, clear refusals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

import stepwell
from stepwell.model.records import Event
from stepwell.push import protocol
from stepwell.push.signing import Signer, Verifier, new_key, parse_keys
from stepwell.store.base import ClaimedRun, Lease
from tests.push.harness import DispatcherThread, WebApp, registered, wait_until

KEY, OLD_KEY, STRANGER = new_key(), new_key(), new_key()


def request_body(function: str = "score", n: int = 4) -> bytes:
    now = datetime.now(UTC)
    claimed = ClaimedRun(
        Lease("run-1", "token-1", now + timedelta(seconds=30)), function, 1, 1,
        Event("e1", "stepwell/function.invoked", {"n": n}, now), now,
    )  # fmt: skip
    return protocol.encode_request(protocol.PushRequest(claimed))


def post(web: WebApp, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(web.url, content=body, headers={"content-type": "application/json", **headers}, timeout=10)


@pytest.fixture
def web(database_url: str, tmp_path: Path) -> WebApp:
    app = WebApp("fastapi", database_url, tmp_path, key=f"{KEY},{OLD_KEY}").start()
    yield app  # type: ignore[misc]
    app.stop()


def test_a_signed_request_is_answered_and_the_answer_is_signed(web: WebApp) -> None:
    body = request_body()
    response = post(web, body, Signer(parse_keys(KEY)).headers("msg_a", body, datetime.now(UTC)))
    assert response.status_code == 200
    Verifier(parse_keys(KEY)).verify(response.headers, response.content, datetime.now(UTC))
    with pytest.raises(stepwell.StepwellError):
        Verifier(parse_keys(STRANGER)).verify(response.headers, response.content, datetime.now(UTC))
    answer = protocol.decode_response(response.content, "run-1")
    assert answer.result == protocol.Completed(b"40")


def test_the_rotated_key_is_accepted_while_configured(web: WebApp) -> None:
    body = request_body()
    assert post(web, body, Signer(parse_keys(OLD_KEY)).headers("m", body, datetime.now(UTC))).status_code == 200


@pytest.mark.parametrize("case", ["unsigned", "wrong-key", "stale", "future", "one-byte", "no-timestamp"])
def test_refused_requests_run_nothing(web: WebApp, case: str) -> None:
    body = request_body()
    now = datetime.now(UTC)
    signer = Signer(parse_keys(STRANGER if case == "wrong-key" else KEY))
    at = {"stale": now - timedelta(minutes=6), "future": now + timedelta(minutes=6)}.get(case, now)
    headers = {} if case == "unsigned" else signer.headers("m", body, at)
    if case == "one-byte":
        body = body.replace(b'"n":4', b'"n":5')
    if case == "no-timestamp":
        headers.pop("webhook-timestamp")
    response = post(web, body, headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "bad_signature"


def test_bad_documents_and_unknown_functions_are_refused_by_name(web: WebApp) -> None:
    signer = Signer(parse_keys(KEY))
    for body, status, words in (
        (b"{}", 400, "protocol"),
        (request_body("nope"), 404, "'nope' is not served here"),
    ):
        response = post(web, body, signer.headers("m", body, datetime.now(UTC)))
        assert response.status_code == status
        assert words in response.json()["error"]["message"]


def test_end_to_end_signed_both_ways(database_url: str, tmp_path: Path) -> None:
    web = WebApp("flask", database_url, tmp_path, key=KEY).start()
    producer = stepwell.App("producer", database_url=database_url)
    try:
        wait_until(lambda: registered(producer), what="the web app's registration")
        with DispatcherThread(database_url, key=KEY):
            [run] = producer.runs(event_id=producer.send("scores.requested", {"count": 3}))
            assert producer.wait(run.id, timeout=30).output == {"total": 3, "completed": 3}
    finally:
        web.stop()
        producer.close()


def test_a_dispatcher_without_the_endpoints_key_gets_nothing_done(database_url: str, tmp_path: Path) -> None:
    web = WebApp("fastapi", database_url, tmp_path, key=KEY).start()
    producer = stepwell.App("producer", database_url=database_url)
    try:
        wait_until(lambda: registered(producer), what="the web app's registration")
        with DispatcherThread(database_url, key=STRANGER):
            [run] = producer.runs(event_id=producer.send("flaky.requested", {}))
            failed = producer.wait(run.id, timeout=30)
            assert failed.status == "failed" and "401" in str(failed.error)
        assert web.executions("boom") == 0
    finally:
        web.stop()
        producer.close()


def test_production_configuration_refuses_to_start_without_a_key() -> None:
    app = stepwell.App("keyless", database_url="sqlite:///:memory:")

    @app.function("noop")
    def noop(ctx: stepwell.Context) -> None: ...

    with pytest.raises(stepwell.StepwellError, match="no signing key"):
        app.asgi()
    with pytest.raises(stepwell.StepwellError, match="no signing key"):
        app.wsgi()
