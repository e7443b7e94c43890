"""The dispatcher refuses endpoints on metadata, private and link-local addresses, and never follows a redirect."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import stepwell
from tests.push.harness import DispatcherThread


class Redirect(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.send_response(307)
        self.send_header("location", "http://127.0.0.1:1/internal-admin")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None: ...


@pytest.fixture
def redirector() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/push"
    server.shutdown()


def pushed_app(database_url: str, url: str) -> stepwell.App:
    app = stepwell.App("target", database_url=database_url)

    @app.function("probe", trigger=stepwell.on_event("probe"), retries=0)
    def probe(ctx: stepwell.Context) -> None: ...

    app.register()
    app.store.set_push_endpoints("target", {"probe": url})
    return app


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://169.254.169.254/latest/meta-data/", "metadata address 169.254.169.254 refused"),
        ("http://10.1.2.3/push", "private address 10.1.2.3 refused"),
        ("http://127.0.0.1:9/push", "loopback address 127.0.0.1 is allowed in development only"),
    ],
)
def test_unsafe_endpoints_are_refused_and_the_run_fails_saying_why(database_url: str, url: str, words: str) -> None:
    app = pushed_app(database_url, url)
    try:
        with DispatcherThread(database_url, allow_loopback=False, key="whsec_c2VjcmV0"):
            [run] = app.runs(event_id=app.send("probe", {}))
            failed = app.wait(run.id, timeout=30)
        assert failed.status == "failed" and words in str(failed.error)
    finally:
        app.close()


def test_a_redirect_is_not_followed(database_url: str, redirector: str) -> None:
    app = pushed_app(database_url, redirector)
    try:
        with DispatcherThread(database_url):
            [run] = app.runs(event_id=app.send("probe", {}))
            failed = app.wait(run.id, timeout=30)
        assert failed.status == "failed" and "redirects are not followed" in str(failed.error)
    finally:
        app.close()
