"""ASGI and WSGI adapters around an `Endpoint`: they only move bytes and headers.

Development mode (no signing key, `dev=True`) answers unsigned requests from loopback clients
only; any other client is refused, so a dev setting shipped by mistake fails closed off-host.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from http import HTTPStatus
from typing import Any

from stepwell.push.endpoint import MAX_REQUEST_BYTES, Answer, Endpoint

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
StartResponse = Callable[..., Any]


def _loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _dev_refusal(endpoint: Endpoint, host: str | None) -> Answer | None:
    if endpoint.verifier.allow_unsigned and not _loopback(host):
        return endpoint.refusal(403, "dev_mode", "development mode (unsigned) serves loopback clients only")
    return None


class AsgiEndpoint:
    """`app.asgi()`: mount it (FastAPI/Starlette `app.mount("/api/stepwell", ...)`) or serve it alone."""

    def __init__(self, endpoint: Endpoint, on_start: Callable[[], None] | None = None) -> None:
        self.endpoint = endpoint
        self._on_start = on_start

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        client = scope.get("client")
        answer = _dev_refusal(self.endpoint, client[0] if client else None)
        if answer is None:
            body = await _read_body(receive)
            if body is None:
                answer = self.endpoint.refusal(413, "too_large", "request body too large")
            else:
                headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope["headers"]}
                answer = await self.endpoint.handle(scope["method"], headers, body)
        raw = [(key.encode(), value.encode()) for key, value in answer.headers.items()]
        raw.append((b"content-length", str(len(answer.body)).encode()))
        await send({"type": "http.response.start", "status": answer.status, "headers": raw})
        await send({"type": "http.response.body", "body": answer.body})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self._on_start is not None:
                    self._on_start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_REQUEST_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


class WsgiEndpoint:
    """`app.wsgi()`: mount it in Flask (DispatcherMiddleware) or Django, or serve it alone."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        answer = _dev_refusal(self.endpoint, environ.get("REMOTE_ADDR"))
        if answer is None:
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = -1
            if length < 0 or length > MAX_REQUEST_BYTES:
                answer = self.endpoint.refusal(413, "too_large", "request body missing a length, or too large")
            else:
                body = environ["wsgi.input"].read(length)
                headers = {
                    key[5:].replace("_", "-").lower(): value
                    for key, value in environ.items()
                    if key.startswith("HTTP_")
                }
                answer = self.endpoint.handle_sync(environ["REQUEST_METHOD"], headers, body)
        status = f"{answer.status} {HTTPStatus(answer.status).phrase}"
        start_response(status, [*answer.headers.items(), ("content-length", str(len(answer.body)))])
        return [answer.body]
