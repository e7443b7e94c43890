"""FINDINGS OF THE SECURITY REVIEW OF 2026-11-29 (docs/security.md, "Review of 2026-11-29") in code
the reviewer may not change (src/stepwell/dashboard/, src/stepwell/push/): each test FAILS until its
finding is fixed, and names the fix the review recommends. Real servers on loopback throughout.

- D1 the dashboard answers 500 (login) or 400 with the database's host and port (pages) while the
     database is away, instead of 503 with Retry-After in general words;
- D2 a dashboard form body trickled byte by byte holds its connection forever (no body timeout);
- D3 draining an ordering key (cancelling every unstarted run of it) takes one click, unconfirmed;
- P1 the push endpoint runs a captured signed request again when it is replayed within the 5 min
     tolerance (no deduplication on webhook-id);
- P2 the dispatcher accepts an endpoint's signed answer to another request (a recorded answer,
     replayed by anyone on the path, settles the run);
- P3 the development (unsigned) push endpoint trusts every client of a reverse proxy on the same host
     (unless the server rewrites the peer from X-Forwarded-For, as uvicorn does), and pages that rebind
     their name to 127.0.0.1: "loopback only" is decided on the peer address alone.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

import stepwell
from stepwell.http import ServerThread
from stepwell.model.records import Event
from stepwell.push import protocol
from stepwell.push.delivery import EndpointFailed, Transport
from stepwell.push.guard import Guard
from stepwell.push.signing import Signer, Verifier, new_key, parse_keys
from stepwell.store.base import ClaimedRun, Lease
from tests.dashboard.conftest import Served, served
from tests.push.harness import WebApp

__all__ = ["served"]  # the dashboard's fixture, imported for pytest

AWAY = "postgresql://postgres@127.0.0.1:1/none?stepwell_pool_timeout=1"
KEY = new_key()
DB_DETAIL = re.compile(r"127\.0\.0\.1\W+port|port 1 failed|Connection refused")


# D1 ----------------------------------------------------------------------------------------------


def test_d1_the_dashboard_answers_an_outage_with_503_in_general_words() -> None:
    """Fix (dashboard/asgi.py): in `_endpoint` and `_login_page`, catch `StoreUnavailable`/`StoreFull`
    before `StepwellError` (and around `session_of` and `check_api_key`, which run outside the try) and
    render error.html with 503, `Retry-After: 1` (30 for StoreFull) and a general message ("the database
    is unavailable; try again shortly"), logging `str(err)` at warning level."""
    away = stepwell.App("away", database_url=AWAY)
    try:
        with ServerThread(away, host="127.0.0.1", port=0, auth=True) as server:
            token = "sw_0123456789abcdef_" + "A" * 43
            login = httpx.post(server.url + "/login", data={"token": token}, headers={"origin": server.url}, timeout=30)
            assert (login.status_code, login.headers.get("retry-after")) == (503, "1"), login.text[:300]
        with ServerThread(away, host="127.0.0.1", port=0, auth=False) as server:
            page = httpx.get(server.url + "/runs", timeout=30)
            assert (page.status_code, page.headers.get("retry-after")) == (503, "1"), page.text[:300]
            assert not DB_DETAIL.search(page.text), "the page names the database's address"
    finally:
        away.close()


# D2 ----------------------------------------------------------------------------------------------


def test_d2_a_trickled_form_body_is_cut_off(served: Served) -> None:
    """Fix (dashboard/forms.py `read_form`): read under `anyio.fail_after(10)` (the API's
    `Limits.body_timeout`), refuse a declared Content-Length over MAX_BODY before reading, and answer
    408 on a timeout (FormError carrying a status)."""
    host, port = served.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=2) as sock:
        head = f"POST /login HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        sock.sendall((head + "Content-Length: 1000\r\n\r\ntoken=").encode())
        deadline, answer, closed = time.monotonic() + 25, b"", False
        while time.monotonic() < deadline and not answer and not closed:
            try:
                sock.sendall(b"a")  # one byte every 2 s: a slowloris that keeps the connection busy
                chunk = sock.recv(4096)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            closed, answer = chunk == b"", answer + chunk
    assert answer or closed, "no answer within 25 s: the connection is held as long as the client trickles"
    assert not answer or answer.startswith(b"HTTP/1.1 408"), answer[:200]


# D3 ----------------------------------------------------------------------------------------------


def _operator(served: Served) -> tuple[httpx.Client, str]:
    client = httpx.Client(base_url=served.url, headers={"origin": served.url})
    assert client.post("/login", data={"token": served.tokens["operate"]}).status_code == 303
    found = re.search(r'name="csrf" value="([^"]+)"', client.get("/keys").text)
    assert found is not None
    return client, found.group(1)


def test_d3_draining_a_key_asks_for_confirmation_first(served: Served) -> None:
    """Fix (dashboard/pages.py `key_action`): for `drain` without a `confirmed=yes` field, count the
    key's unstarted runs and render confirm.html ("Cancel N runs of key K?") with the fields and
    `confirmed=yes`; cancel only on that second POST (as the bulk redrive does)."""
    served.app.pause_key("ordered", "held")  # the worker must not start them while we look
    for n in range(3):
        served.app.send("ordered", {"k": "held", "n": n})
    client, csrf = _operator(served)
    first = client.post("/keys/drain", data={"csrf": csrf, "function": "ordered", "key": "held"})
    queued = [run for run in served.app.runs(function="ordered") if run.status == stepwell.RunStatus.QUEUED]
    assert len(queued) == 3, "one click cancelled every unstarted run of the key, unconfirmed"
    assert first.status_code == 200 and 'name="confirmed"' in first.text


# P1 ----------------------------------------------------------------------------------------------


def _request_body(function: str, event_name: str, data: dict[str, object]) -> bytes:
    now = datetime.now(UTC)
    claimed = ClaimedRun(
        Lease("run-review", "token-1", now + timedelta(seconds=30)), function, 1, 2,
        Event("e-review", event_name, data, now), now,
    )  # fmt: skip
    return protocol.encode_request(protocol.PushRequest(claimed))


@pytest.fixture
def signed_web(database_url: str, tmp_path: Path) -> Iterator[WebApp]:
    web = WebApp("fastapi", database_url, tmp_path, key=KEY).start()
    yield web
    web.stop()


def test_p1_a_replayed_signed_request_runs_no_user_code_again(signed_web: WebApp) -> None:
    """Fix (push/endpoint.py `Endpoint.check`): after a good signature, remember the webhook-id (a
    bounded map id -> time, entries older than 2 x tolerance dropped, e.g. 100,000 at most) and answer
    a second request with the same id 409 `duplicate` without running anything. The dispatcher gives
    every request a fresh id, so only a replay is refused."""
    body = _request_body("flaky", "flaky.requested", {})
    headers = {
        "content-type": "application/json",
        **Signer(parse_keys(KEY)).headers("msg_once", body, datetime.now(UTC)),
    }
    first = httpx.post(signed_web.url, content=body, headers=headers, timeout=30)
    assert first.status_code == 200 and signed_web.executions("boom") == 1
    replayed = httpx.post(signed_web.url, content=body, headers=headers, timeout=30)
    assert signed_web.executions("boom") == 1, "the replayed request ran the step's code again"
    assert replayed.status_code == 409


# P2 ----------------------------------------------------------------------------------------------


class _Recorded(BaseHTTPRequestHandler):
    """An endpoint that answers every request with one recorded, genuinely signed answer."""

    answer: tuple[dict[str, str], bytes] = ({}, b"")

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        headers, body = self.answer
        self.send_response(200)
        for name, value in {**headers, "content-type": "application/json"}.items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None: ...


@pytest.fixture
def recorded() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorded)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/push"
    server.shutdown()


def test_p2_the_dispatcher_refuses_a_signed_answer_to_another_request(recorded: str) -> None:
    """Fix (push/delivery.py `Transport._exchange`): `answered = self.verifier.verify(...)`; when
    signing keys are set and `answered != message_id`, raise EndpointFailed("answer signed for another
    request"). The endpoint already signs its answer with the request's id."""
    keys = parse_keys(KEY)
    answer = protocol.encode_response(protocol.PushResponse((), protocol.Completed(b'"forged"')))
    _Recorded.answer = (Signer(keys).headers("msg_an_earlier_request", answer, datetime.now(UTC)), answer)

    async def push() -> protocol.PushResponse:
        async with httpx.AsyncClient(trust_env=False) as client:
            transport = Transport(client, Guard(allow_loopback=True), Signer(keys), Verifier(keys), 1 << 20)
            return await transport.post(
                recorded, _request_body("score", "x", {"n": 4}), "run-review", datetime.now(UTC)
            )

    import asyncio

    with pytest.raises(EndpointFailed, match="another request"):
        asyncio.run(push())


# P3 ----------------------------------------------------------------------------------------------


@pytest.fixture
def dev_web(database_url: str, tmp_path: Path) -> Iterator[WebApp]:
    web = WebApp("fastapi", database_url, tmp_path).start()  # no key: dev=True, unsigned, "loopback only"
    yield web
    web.stop()


@pytest.mark.parametrize(
    "headers",
    [
        {"x-real-ip": "203.0.113.7"},  # nginx on the same host, proxying the internet
        {"forwarded": "for=203.0.113.7"},  # (X-Forwarded-For from 127.0.0.1 is applied by uvicorn itself)
        {"host": "rebound.evil.example"},  # a page whose name was re-pointed at 127.0.0.1
    ],
    ids=["x-real-ip", "forwarded", "rebinding"],
)
def test_p3_the_unsigned_dev_endpoint_refuses_proxied_and_rebound_requests(
    dev_web: WebApp, headers: dict[str, str]
) -> None:
    """Fix (push/adapters.py `_dev_refusal`): in development mode also refuse (403 `dev_mode`) a
    request carrying Forwarded, X-Forwarded-For or X-Real-IP, and one whose Host is not a loopback
    name (`stepwell.http.envelope.is_loopback(host_name(...))`); same for the WSGI adapter (HTTP_HOST,
    HTTP_X_FORWARDED_FOR, HTTP_FORWARDED, HTTP_X_REAL_IP)."""
    body = _request_body("flaky", "flaky.requested", {})
    answer = httpx.post(dev_web.url, content=body, headers={"content-type": "application/json", **headers}, timeout=30)
    assert dev_web.executions("boom") == 0, "an unsigned request from beyond the host ran user code"
    assert answer.status_code == 403
