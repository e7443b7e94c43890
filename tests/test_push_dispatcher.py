"""The dispatcher's own guarantees, on both stores: a run whose lease it no longer trusts is never pushed.

A real endpoint on loopback counts the requests it gets; the run is claimed by the dispatcher's own
claim path, then its local lease deadline is made to pass (as after a pause longer than the lease).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

import stepwell
from stepwell.push.delivery import Transport
from stepwell.push.dispatcher import Dispatcher, PushOptions
from stepwell.push.http1 import Http1Client
from stepwell.push.signing import Signer, Verifier


@pytest.fixture
def endpoint() -> Iterator[tuple[str, list[bytes]]]:
    """A web app that answers 500 to every request, and remembers them."""
    seen: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append(self.rfile.read(int(self.headers["content-length"])))
            self.send_response(500)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/push", seen
    server.shutdown()
    server.server_close()


def claimed_run(database_url: str, url: str) -> tuple[stepwell.App, Dispatcher]:
    app = stepwell.App("shop", database_url=database_url)

    @app.function("pushed", trigger=stepwell.on_event("go"))
    def pushed(ctx: stepwell.Context) -> None:
        return None

    app.register()
    app.store.set_push_endpoints(app.name, {"pushed": url})
    app.send("go", {})
    options = PushOptions(dev=True, allow_loopback=True, lease=timedelta(seconds=30))
    return app, Dispatcher(app.store, app.clock, app.router, options)


def test_a_run_is_not_pushed_once_its_local_lease_deadline_passed(
    database_url: str, endpoint: tuple[str, list[bytes]]
) -> None:
    url, seen = endpoint
    app, dispatcher = claimed_run(database_url, url)

    async def main() -> None:
        async with httpx.AsyncClient() as client:
            dispatcher.transport = Transport(
                client, dispatcher.guard, Signer(()), Verifier.dev(), 1 << 20, 5.0, Http1Client()
            )
            dispatcher._wake, dispatcher._settled = asyncio.Event(), asyncio.Event()
            since = dispatcher._deadlines.now()
            _, [run] = await dispatcher._claim(10)
            dispatcher._deadlines.granted([run.run_id], since)
            dispatcher._held[run.run_id] = run.lease
            dispatcher._deadlines.lost([run.run_id])  # as the heartbeat reports, or after a long pause
            await dispatcher._deliver(run, url)
            assert seen == [] and dispatcher._pending == [] and run.run_id not in dispatcher._held
            # the control: a run whose lease is trusted is pushed (and its 500 counts as a failed attempt)
            app.send("go", {})
            since = dispatcher._deadlines.now()
            _, [other] = await dispatcher._claim(10)
            dispatcher._deadlines.granted([other.run_id], since)
            await dispatcher._deliver(other, url)
            assert len(seen) == 1 and [s.lease.run_id for s in dispatcher._pending] == [other.run_id]

    try:
        asyncio.run(main())
    finally:
        app.close()
