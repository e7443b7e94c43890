"""Running the API under uvicorn: in the foreground (`stepwell server`) or on a thread (`stepwell dev`, tests).

Slow clients are cut off: a request's headers must arrive within `Limits.header_timeout` (uvicorn
itself has no such timer, so the HTTP/1.1 protocol is extended by a few lines below), its body
within `Limits.body_timeout` (408, see limits.py), and an idle keep-alive connection is closed
after 5 s.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from stepwell.app import App
from stepwell.errors import ConfigurationError
from stepwell.http.asgi import create_app
from stepwell.http.envelope import is_loopback
from stepwell.http.limits import Limits

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8288


def check_bind(host: str, auth: bool) -> None:
    """Without keys the API may listen on loopback only: anyone who reaches it could do anything."""
    if not auth and not is_loopback(host):
        raise ConfigurationError(
            f"refusing to listen on {host} without API keys: bind 127.0.0.1, or serve with keys "
            "(create one with `stepwell tokens create`)"
        )


def _protocol(header_timeout: float) -> type[asyncio.Protocol]:
    class HeaderTimeoutProtocol(H11Protocol):
        """Closes a connection whose request headers have not all arrived within `header_timeout`."""

        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)  # type: ignore[arg-type]
            self._arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            self._deadline = self.loop.call_later(header_timeout, self._expire)

        def _expire(self) -> None:
            if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
                self.transport.close()

    return HeaderTimeoutProtocol


def config(
    app: App, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, auth: bool = True, limits: Limits | None = None,
    **options: Any,
) -> uvicorn.Config:  # fmt: skip
    check_bind(host, auth)
    limits = limits or Limits()
    if app.registry.names():  # an app with its own functions registers them, as a worker does at start
        app.register()
    return uvicorn.Config(
        create_app(app, auth=auth, limits=limits),
        host=host,
        port=port,
        http=_protocol(limits.header_timeout),
        lifespan="off",
        timeout_keep_alive=5,
        limit_concurrency=options.pop("limit_concurrency", 1000),  # beyond: 503 from uvicorn itself
        h11_max_incomplete_event_size=16 * 1024,  # request line and headers
        server_header=False,
        log_level=options.pop("log_level", "warning"),
        **options,
    )


def serve(app: App, **kwargs: Any) -> None:
    """Serve in the foreground until SIGTERM/SIGINT."""
    uvicorn.Server(config(app, **kwargs)).run()


class ServerThread:
    """The API on a background thread: `with ServerThread(app, port=0) as server: server.url`."""

    def __init__(self, app: App, **kwargs: Any) -> None:
        self._config = config(app, **kwargs)
        self._server = uvicorn.Server(self._config)
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self.url = ""

    def start(self) -> ServerThread:
        host, port = self._config.host, self._config.port
        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP (else Nagle
        # and delayed ACKs add ~40 ms to every response)
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))  # bound here, so that port 0 gives a free port we can name
        self._sock = sock
        thread = self._thread = threading.Thread(
            target=self._server.run, args=([sock],), name="stepwell-http", daemon=True
        )
        thread.start()
        while not self._server.started:
            if not thread.is_alive():
                raise RuntimeError(f"the HTTP server did not start on {host}:{port}")
            threading.Event().wait(0.01)
        bound = sock.getsockname()
        self.url = f"http://{host if ':' not in host else f'[{host}]'}:{bound[1]}"
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._sock is not None:
            self._sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
