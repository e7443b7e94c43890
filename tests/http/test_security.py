"""Security and limits on a real server: keys and scopes on every route, limits at and past the edge,
malformed and hostile bodies, slow clients, back-pressure (429/503 with Retry-After), loopback-only dev."""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import psycopg
import pytest

import stepwell
from stepwell.errors import ConfigurationError
from stepwell.http import Limits, ServerThread
from stepwell.http.routes import ROUTES
from tests.http.conftest import Served, ServeFactory

WRONG_SCOPE = {"ingest": "read", "read": "ingest", "operate": "read", "admin": "operate"}
JSON = {"Content-Type": "application/json"}


def _url(path: str) -> str:
    return path.replace("{event_id:path}", "some-event").replace("{run_id}", "some-run").replace("{key_id}", "k")


def test_every_route_but_health_refuses_a_missing_key_and_a_key_of_the_wrong_scope(served: Served) -> None:
    walked = 0
    for route in ROUTES:
        url = _url(route.path)
        open_response = served.http.request(route.method, url, content=b"{}", headers=JSON)
        if route.scope is None:
            assert open_response.status_code == 200, url
            continue
        walked += 1
        assert open_response.status_code == 401, (route.method, url)
        assert open_response.json()["code"] == "unauthorized" and "Bearer" in open_response.headers["WWW-Authenticate"]
        wrong = served.headers(WRONG_SCOPE[route.scope.value])
        refused = served.http.request(route.method, url, content=b"{}", headers={**JSON, **wrong})
        assert (refused.status_code, refused.json()["code"]) == (403, "forbidden"), (route.method, url)
        forged = {"Authorization": "Bearer sw_0123456789abcdef_" + "A" * 43, **JSON}
        assert served.http.request(route.method, url, content=b"{}", headers=forged).status_code == 401
    assert walked == len(ROUTES) - 2  # all but health and readiness


def test_without_auth_the_routes_need_no_key(serve: ServeFactory) -> None:
    served = serve(auth=False)
    assert served.http.post("/api/v1/events", json={"name": "user.created"}).status_code == 202


def test_serving_without_keys_beyond_loopback_is_refused(served: Served) -> None:
    with pytest.raises(ConfigurationError, match=r"refusing to listen on 0\.0\.0\.0 without API keys"):
        ServerThread(served.app, host="0.0.0.0", port=0, auth=False)
    with pytest.raises(ConfigurationError):
        ServerThread(served.app, host="192.168.1.1", port=0, auth=False)


def _padded_event(size: int) -> bytes:
    """An event whose JSON body is exactly `size` bytes."""
    empty = orjson.dumps({"name": "user.created", "data": {"p": ""}})
    return orjson.dumps({"name": "user.created", "data": {"p": "x" * (size - len(empty))}})


def post_raw(served: Served, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return served.http.post("/api/v1/events", content=body, headers={**JSON, **served.headers(), **(headers or {})})


def test_body_size_at_the_limit_and_one_past_it(serve: ServeFactory) -> None:
    served = serve(limits=Limits(max_body_bytes=1000))
    assert post_raw(served, _padded_event(1000)).status_code == 202
    over = post_raw(served, _padded_event(1001))
    assert (over.status_code, over.json()["code"], over.json()["field"]) == (413, "too_large", "body")

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
        body = _padded_event(1001)
        yield from (body[i : i + 100] for i in range(0, len(body), 100))

    streamed = served.http.post("/api/v1/events", content=chunks(), headers={**JSON, **served.headers()})
    assert streamed.status_code == 413
    assert len(served.app.runs(limit=100)) == 1


def test_batch_size_at_the_limit_and_one_past_it(serve: ServeFactory) -> None:
    served = serve(limits=Limits(max_batch=3))
    assert post_raw(served, orjson.dumps([{"name": "user.created"}] * 3)).status_code == 202
    over = post_raw(served, orjson.dumps([{"name": "user.created"}] * 4))
    assert over.status_code == 422 and "over the limit of 3" in over.json()["message"]
    assert len(served.app.runs()) == 3


def _nested(depth: int) -> bytes:
    """An event body nested exactly `depth` levels deep (the outer object is level 1)."""
    data: Any = 1
    for _ in range(depth - 1):
        data = {"a": data}
    return orjson.dumps({"name": "user.created", "data": data})


def test_json_depth_at_the_limit_and_one_past_it(serve: ServeFactory) -> None:
    served = serve(limits=Limits(max_json_depth=5))
    assert post_raw(served, _nested(5)).status_code == 202
    over = post_raw(served, _nested(6))
    assert (over.status_code, over.json()["code"]) == (422, "too_deep")
    brackets_in_strings = orjson.dumps({"name": "user.created", "data": {"s": "[[[[[[[[{{{{{{{{"}})
    assert post_raw(served, brackets_in_strings).status_code == 202


def test_name_length_at_the_limit_and_one_past_it(served: Served) -> None:
    assert post_raw(served, orjson.dumps({"name": "n" * 200})).status_code == 202
    over = post_raw(served, orjson.dumps({"name": "n" * 201}))
    assert over.status_code == 422 and over.json()["code"] == "event_rejected"
    at = served.http.get("/api/v1/runs/" + "r" * 200, headers=served.headers())
    past = served.http.get("/api/v1/runs/" + "r" * 201, headers=served.headers())
    assert (at.status_code, past.status_code, past.json()["field"]) == (404, 422, "run_id")
    long_filter = served.http.get("/api/v1/runs", params={"function": "f" * 201}, headers=served.headers())
    assert long_filter.status_code == 422 and long_filter.json()["field"] == "function"


@pytest.mark.parametrize(
    ("body", "headers", "status", "code"),
    [
        (b'{"name": "user.created",', {}, 400, "bad_request"),
        (b'{"name": "user.created"}', {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
        (b'{"name": "user.created"}', {"Content-Type": "application/x-www-form-urlencoded"}, 415, None),
        (b"[" * 10_000 + b"]" * 10_000, {}, 422, "too_deep"),
        (b'{"name": "user.created", "data": {"s": "\xff\xfe"}}', {}, 400, "bad_request"),
        (b'{"name": "user.created", "data": {"s": "\\ud800"}}', {}, 400, "bad_request"),
        (b'{"name": "user.created", "data": {"x": NaN}}', {}, 400, "bad_request"),
        (b'{"name": "user.created", "data": {"x": Infinity}}', {}, 400, "bad_request"),
        (b'{"name": "user.created", "data": {"x": 1e400}}', {}, 400, "bad_request"),
        (b"", {}, 400, "bad_request"),
        (b"null", {}, 422, "invalid"),
        (b"42", {}, 422, "invalid"),
        (b"[]", {}, 422, "invalid"),
        (b"[42]", {}, 422, "invalid"),
        (b'{"data": {}}', {}, 422, "invalid"),
        (b'{"name": 7}', {}, 422, "invalid"),
        (b'{"name": "user.created", "extra": 1}', {}, 422, "invalid"),
        (b'{"name": "user.created", "ts": "yesterday"}', {}, 422, "invalid"),
        (b'{"name": "user.created", "ts": "2030-01-01T00:00:00"}', {}, 422, "invalid"),
        (b'{"name": "user.created", "id": ""}', {}, 422, "event_rejected"),
        (b'{"name": "user.created"}', {"Content-Length": "abc"}, 400, None),
    ],
)
def test_malformed_bodies_are_refused_with_a_clear_error_and_store_nothing(
    served: Served, body: bytes, headers: dict[str, str], status: int, code: str | None
) -> None:
    response = post_raw(served, body, headers) if "Content-Length" not in headers else _raw_post(served, body, headers)
    assert response.status_code == status, response.text
    if code is not None:
        error = response.json()
        assert error["code"] == code and error["message"] and set(error) == {"code", "message", "field", "request_id"}
    assert served.app.runs() == []


def _raw_post(served: Served, body: bytes, headers: dict[str, str]) -> httpx.Response:
    """A request written by hand on the socket (httpx would fix a bad Content-Length)."""
    host, port = served.url.removeprefix("http://").split(":")
    lines = ["POST /api/v1/events HTTP/1.1", f"Host: {host}", "Content-Type: application/json",
             f"Authorization: Bearer {served.admin}", *(f"{k}: {v}" for k, v in headers.items()), "", ""]  # fmt: skip
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall("\r\n".join(lines).encode() + body)
        answer = _read_response(sock)
    status = int(answer.split(b" ", 2)[1])
    payload = answer.split(b"\r\n\r\n", 1)[1]
    return httpx.Response(status, content=payload, headers=JSON)


def _read_response(sock: socket.socket) -> bytes:
    """One whole response (head and Content-Length bytes of body) from a raw socket."""
    answer = b""
    while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < _length(answer):
        chunk = sock.recv(65536)
        if not chunk:
            break
        answer += chunk
    return answer


def _length(answer: bytes) -> int:
    for line in answer.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 0


HOSTILE_NAMES = [
    "user.created\x00",
    "../../etc/passwd",
    "<script>alert(1)</script>",
    "x'; DROP TABLE events; --",
    "user\u202ecreated",
    "名前",
    "🙂",
    " user.created",
    "user created",
    "a" * 10_000,
    "",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=range(len(HOSTILE_NAMES)))
def test_hostile_names_are_refused_and_nothing_is_stored(served: Served, name: str) -> None:
    response = post_raw(served, orjson.dumps({"name": name}))
    assert response.status_code == 422 and response.json()["field"] in (None, "body", "name")
    key = served.http.post("/api/v1/ordering-keys/pause", json={"function": name, "key": "k"}, headers=served.headers())
    assert key.status_code in (404, 422) and key.json()["code"] in ("not_found", "invalid")
    paused = served.http.post("/api/v1/functions/pause", json={"function": name}, headers=served.headers())
    assert paused.status_code in (404, 422) and paused.json()["code"] in ("not_found", "invalid")
    assert served.app.runs() == []


def test_query_parameters_are_checked(served: Served) -> None:
    for params, field in [
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"status": "lost"}, "status"),
        ({"since": "not a time"}, "since"),
        ({"cursor": "%%%"}, "cursor"),
    ]:
        response = served.http.get("/api/v1/runs", params=params, headers=served.headers())
        assert response.status_code in (400, 422) and response.json()["field"] == field, params
    twice = served.http.get("/api/v1/runs?function=a&function=b", headers=served.headers())
    assert twice.status_code == 400 and twice.json()["field"] == "function"


def test_a_client_that_trickles_its_headers_is_disconnected(serve: ServeFactory) -> None:
    served = serve(limits=Limits(header_timeout=0.5))
    host, port = served.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n")
        begun = time.monotonic()
        assert sock.recv(1024) == b"", "the server closes the connection"
        assert time.monotonic() - begun < 3
    assert served.http.get("/api/v1/health").status_code == 200, "a prompt client is served"


def test_a_client_that_trickles_its_body_gets_408(serve: ServeFactory) -> None:
    served = serve(limits=Limits(body_timeout=0.5))
    host, port = served.url.removeprefix("http://").split(":")
    head = (f"POST /api/v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {served.admin}\r\nContent-Length: 100\r\n\r\n").encode()  # fmt: skip
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(head + b'{"name": ')
        answer = _read_response(sock)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b'"code":"timeout"' in answer


@contextlib.contextmanager
def _write_lock(backend: str, database_url: str) -> Iterator[None]:
    """Hold the database's write lock from another connection, as a long transaction elsewhere would."""
    if backend == "sqlite":
        conn = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    with psycopg.connect(database_url) as pg:
        pg.execute("LOCK TABLE events IN EXCLUSIVE MODE")
        try:
            yield
        finally:
            pg.rollback()


def test_a_saturated_server_answers_429_with_retry_after_and_drops_nothing(
    serve: ServeFactory, backend: str, database_url: str
) -> None:
    served = serve(limits=Limits(max_inflight_writes=1, queue_timeout=0.2))
    headers = served.headers("ingest")
    served.app.runs()  # the schema exists before the lock is taken
    first: list[httpx.Response] = []
    with _write_lock(backend, database_url):
        sender = threading.Thread(
            target=lambda: first.append(
                httpx.post(
                    served.url + "/api/v1/events",
                    json={"name": "user.created", "id": "held"},
                    headers=headers,
                    timeout=30,
                )
            )
        )
        sender.start()
        time.sleep(0.5)  # the first send holds the only write slot, waiting on the lock
        refused = served.http.post("/api/v1/events", json={"name": "user.created", "id": "refused"}, headers=headers)
    sender.join()
    assert (refused.status_code, refused.headers["Retry-After"], refused.json()["code"]) == (429, "1", "saturated")
    assert first[0].status_code == 202
    assert [run.event_id for run in served.app.runs()] == ["held"], "the refused event was not stored"


def test_an_unreachable_store_answers_503_with_retry_after(serve: ServeFactory) -> None:
    away = stepwell.App("away", database_url="postgresql://postgres@127.0.0.1:1/none?stepwell_pool_timeout=1")
    server = ServerThread(away, host="127.0.0.1", port=0, auth=False).start()
    try:
        sent = httpx.post(server.url + "/api/v1/events", json={"name": "user.created"}, timeout=30)
        assert (sent.status_code, sent.json()["code"]) == (503, "store_unavailable")
        assert sent.headers["Retry-After"] == "1"
        assert httpx.get(server.url + "/api/v1/ready", timeout=30).status_code == 503
        assert httpx.get(server.url + "/api/v1/health", timeout=30).status_code == 200
    finally:
        server.stop()
