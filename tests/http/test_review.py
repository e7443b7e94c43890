"""Findings of the security review of the HTTP API (docs/security.md, "Review of 2026-11-29"), each a
test on a real server on loopback: DNS rebinding against the keyless server, database details in
the answers of an outage, request ids in errors, nosniff, an open OpenAPI document that names no secret."""

from __future__ import annotations

import logging

import httpx
import pytest

import stepwell
from stepwell.http import ServerThread
from tests.http.conftest import Served, ServeFactory

AWAY = "postgresql://postgres@127.0.0.1:1/none?stepwell_pool_timeout=1"


def _port(served: Served) -> str:
    return served.url.rsplit(":", 1)[1]


def test_a_keyless_server_answers_only_requests_addressed_to_a_loopback_name(serve: ServeFactory) -> None:
    """DNS rebinding: a web page on evil.example re-points its name at 127.0.0.1 and, being same-origin
    for the browser, drives the keyless `stepwell dev` server (API and dashboard). The Host header is
    the only sign of it, so a server without keys answers loopback names only."""
    served = serve(auth=False)
    port = _port(served)
    for host in (f"evil.example:{port}", "evil.example", f"127.0.0.1.evil.example:{port}", f"10.0.0.8:{port}", ""):
        sent = served.http.post(
            "/api/v1/events", json={"name": "user.created", "id": "rebound"}, headers={"Host": host}
        )
        assert (sent.status_code, sent.json()["code"]) == (421, "misdirected"), host
        assert "loopback" in sent.json()["message"]
        page = served.http.get("/runs", headers={"Host": host})
        assert page.status_code == 421, host
        assert "stepwell_session" not in page.headers.get("set-cookie", "")
    for relayed in ({"X-Forwarded-For": "203.0.113.7"}, {"Forwarded": "for=203.0.113.7"}, {"X-Real-IP": "203.0.113.7"}):
        sent = served.http.post("/api/v1/events", json={"name": "user.created", "id": "relayed"}, headers=relayed)
        assert (sent.status_code, sent.json()["code"]) == (421, "misdirected"), relayed  # a proxy on this host
    assert served.app.runs() == [], "a refused request stored nothing"
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}", f"127.0.0.2:{port}"):
        assert served.http.get("/api/v1/health", headers={"Host": host}).status_code == 200, host
    assert served.http.post("/api/v1/events", json={"name": "user.created"}).status_code == 202


def test_a_server_with_keys_answers_any_host_name(served: Served) -> None:
    """Behind a proxy the name is the proxy's: with keys, the key is the guard, not the name."""
    assert served.http.get("/api/v1/health", headers={"Host": "api.example.com"}).status_code == 200
    runs = served.http.get("/api/v1/runs", headers={"Host": "api.example.com", **served.headers("read")})
    assert runs.status_code == 200


def test_an_outage_tells_the_client_nothing_about_the_database(caplog: pytest.LogCaptureFixture) -> None:
    """Readiness is open to anyone: its 503 must not name the database's host, port or driver message.
    The details go to the log, under the request id the client was given."""
    away = stepwell.App("away", database_url=AWAY)
    caplog.set_level(logging.WARNING, logger="stepwell.http")
    with ServerThread(away, host="127.0.0.1", port=0, auth=False) as server:
        for answer in (
            httpx.get(server.url + "/api/v1/ready", timeout=30),
            httpx.post(server.url + "/api/v1/events", json={"name": "user.created"}, timeout=30),
        ):
            body = answer.json()
            assert (answer.status_code, body["code"], answer.headers["Retry-After"]) == (503, "store_unavailable", "1")
            assert "127.0.0.1" not in answer.text and "port" not in answer.text and "connect" not in answer.text
            assert "database is unavailable" in body["message"]
            assert body["request_id"] == answer.headers["X-Request-Id"]
            logged = [r.getMessage() for r in caplog.records if body["request_id"] in r.getMessage()]
            assert logged and "127.0.0.1" in logged[0], "the details are in the log, under the request id"
    away.close()


def test_every_api_answer_carries_a_request_id_and_nosniff(served: Served) -> None:
    answers = [
        served.http.get("/api/v1/health"),
        served.http.get("/api/v1/runs/nope", headers=served.headers("read")),  # 404 from the App
        served.http.get("/api/v1/runs"),  # 401
        served.http.post(
            "/api/v1/events", content=b"{", headers={"Content-Type": "application/json", **served.headers()}
        ),
        served.http.get("/api/v1/no-such-route"),  # the API's own 404 beside the dashboard
        served.http.get("/api/v1/openapi.json"),
        served.http.get("/metrics", headers=served.headers("read")),
    ]
    seen = set()
    for answer in answers:
        assert answer.headers["X-Content-Type-Options"] == "nosniff", answer.url
        request_id = answer.headers["X-Request-Id"]
        assert len(request_id) >= 16 and request_id not in seen, answer.url
        seen.add(request_id)
        if answer.status_code >= 400:
            assert answer.json()["request_id"] == request_id, answer.url


def test_the_openapi_document_is_open_and_names_no_secret(served: Served) -> None:
    document = served.http.get("/api/v1/openapi.json")
    assert document.status_code == 200
    text = document.text
    assert all(token not in text for token in served.tokens.values())
    assert served.app.store.__class__.__name__ not in text


@pytest.mark.parametrize(
    "body",
    [
        b'{"name": "user.created", "name": "admin.deleted"}',
        b'{"name": "user.created", "data": {"role": "user", "role": "admin"}}',
        b'[{"name": "user.created"}, {"name": "user.created", "data": {"a": {"b": 1, "b": 2}}}]',
    ],
)
def test_a_body_with_a_duplicate_key_is_refused(served: Served, body: bytes) -> None:
    """Catalogue 31: a duplicate key is malformed JSON. Parsers disagree on which one wins (orjson keeps
    the last, others the first), so a proxy or a signature check could see another event than the store."""
    sent = served.http.post(
        "/api/v1/events", content=body, headers={"Content-Type": "application/json", **served.headers("ingest")}
    )
    assert (sent.status_code, sent.json()["code"], sent.json()["field"]) == (400, "bad_request", "body"), sent.text
    assert "duplicate key" in sent.json()["message"]
    assert served.app.runs() == []
