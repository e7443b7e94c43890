"""The web app's endpoint over real HTTP: signed requests only, signed answers, clear refusals,
no replays (finding P1 of the review of 2026-11-29), and a development endpoint that answers only
requests addressed to loopback and not relayed by a proxy (finding P3)."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
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
        response = post(web, body, signer.headers(f"m{status}", body, datetime.now(UTC)))  # ids never repeat
        assert response.status_code == status
        assert words in response.json()["error"]["message"]


@pytest.fixture(params=["fastapi", "flask"])
def signed_web(request: pytest.FixtureRequest, database_url: str, tmp_path: Path) -> Iterator[WebApp]:
    web = WebApp(request.param, database_url, tmp_path, key=KEY).start()
    yield web
    web.stop()


def test_a_replayed_signed_request_runs_no_user_code_again(signed_web: WebApp) -> None:
    """P1: a request captured on the way and sent again within the signature's tolerance is refused
    (409 `duplicate`) and runs nothing; a fresh id, as the dispatcher sends, is not a replay."""
    body = request_body("flaky")
    signer = Signer(parse_keys(KEY))
    headers = signer.headers("msg_once", body, datetime.now(UTC))
    first = post(signed_web, body, headers)
    assert first.status_code == 200 and signed_web.executions("boom") == 1
    replayed = post(signed_web, body, headers)
    assert signed_web.executions("boom") == 1, "the replayed request ran the step's code again"
    assert replayed.status_code == 409
    assert replayed.json()["error"]["code"] == "duplicate" and "msg_once" in replayed.json()["error"]["message"]
    Verifier(parse_keys(KEY)).verify(replayed.headers, replayed.content, datetime.now(UTC))  # signed, like every answer
    assert post(signed_web, body, signer.headers("msg_fresh", body, datetime.now(UTC))).status_code == 200
    assert signed_web.executions("boom") == 2


@pytest.fixture(params=["fastapi", "flask"])
def dev_web(request: pytest.FixtureRequest, database_url: str, tmp_path: Path) -> Iterator[WebApp]:
    web = WebApp(request.param, database_url, tmp_path).start()  # no key: dev=True, unsigned, loopback only
    yield web
    web.stop()


@pytest.mark.parametrize(
    ("kind", "headers", "status"),
    [
        ("fastapi", {"x-real-ip": "203.0.113.7"}, 421),  # nginx on this host, proxying the internet
        ("flask", {"x-real-ip": "203.0.113.7"}, 421),
        ("fastapi", {"forwarded": "for=203.0.113.7"}, 421),
        # uvicorn applies X-Forwarded-For from 127.0.0.1 itself: the peer is then the forwarded address.
        # (waitress removes Forwarded and X-Forwarded-* before the app sees them; WSGI servers that pass
        # them on are covered in process by test_push_protocol.py::test_development_mode_…)
        ("fastapi", {"x-forwarded-for": "203.0.113.7"}, 403),
        ("fastapi", {"host": "rebound.evil.example"}, 421),  # a page whose name was re-pointed at 127.0.0.1
        ("flask", {"host": "rebound.evil.example"}, 421),
        ("fastapi", {"host": "rebound.evil.example:8000"}, 421),
        ("flask", {"host": "rebound.evil.example:8000"}, 421),
    ],
)
def test_the_unsigned_dev_endpoint_refuses_proxied_and_rebound_requests(
    database_url: str, tmp_path: Path, kind: str, headers: dict[str, str], status: int
) -> None:
    """P3: in development mode the peer being loopback is not enough (a local proxy, a rebound page)."""
    web = WebApp(kind, database_url, tmp_path).start()  # no key: dev=True, unsigned, loopback only
    try:
        answer = post(web, request_body("flaky"), headers)
        assert web.executions("boom") == 0, "an unsigned request from beyond the host ran user code"
        assert answer.status_code == status
        assert answer.json()["error"]["code"] == {421: "misdirected", 403: "dev_mode"}[status]
    finally:
        web.stop()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]"])
def test_the_unsigned_dev_endpoint_answers_requests_addressed_to_a_loopback_name(dev_web: WebApp, host: str) -> None:
    answer = post(dev_web, request_body(), {"host": f"{host}:{dev_web.port}"})
    assert answer.status_code == 200
    assert protocol.decode_response(answer.content, "run-1").result == protocol.Completed(b"40")


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


def _stalled_post(web: WebApp, headers: dict[str, str], declared: int) -> bytes:
    """Send the request line and headers and the first KiB of a `declared`-byte body, then stall:
    what the endpoint answers within 5 s, without the rest of the body ever arriving."""
    url = httpx.URL(web.url)
    lines = [f"POST {url.raw_path.decode()} HTTP/1.1", f"Host: 127.0.0.1:{url.port}", f"Content-Length: {declared}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    with socket.create_connection(("127.0.0.1", url.port or 80), timeout=5) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + b"x" * 1024)
        answer = b""
        try:
            while not _complete(answer):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except TimeoutError:
            return answer or b"(no answer within 5 s: the endpoint waited for the body)"
        return answer


def _complete(answer: bytes) -> bool:
    head, found, body = answer.partition(b"\r\n\r\n")
    length = re.search(rb"content-length: (\d+)", head, re.IGNORECASE)
    return bool(found and length and len(body) >= int(length.group(1)))


@pytest.mark.parametrize("case", ["unsigned", "stale", "no-signature", "bad-timestamp"])
def test_an_unsigned_or_stale_request_is_refused_before_its_body_is_read(web: WebApp, case: str) -> None:
    """Review leftover: the endpoint read up to 64 MiB before checking the signature. Now the
    headers are checked first; a client that sends them and stalls gets 401 at once."""
    signed = Signer(parse_keys(KEY)).headers("m-stalled", b"", datetime.now(UTC) - timedelta(minutes=6))
    headers = {
        "unsigned": {},
        "stale": signed,
        "no-signature": {**signed, "webhook-timestamp": str(int(datetime.now(UTC).timestamp())),
                         "webhook-signature": "v2,nope"},
        "bad-timestamp": {**signed, "webhook-timestamp": "soon"},
    }[case]  # fmt: skip
    answer = _stalled_post(web, headers, 60 * 1024 * 1024)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert b"bad_signature" in answer


def test_a_signed_request_declaring_a_body_over_the_limit_is_refused_before_it_is_read(web: WebApp) -> None:
    headers = Signer(parse_keys(KEY)).headers("m-huge", b"", datetime.now(UTC))
    answer = _stalled_post(web, headers, 65 * 1024 * 1024)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
