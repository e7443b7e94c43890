"""ASGI and WSGI adapters around an `Endpoint`: they only move bytes and headers.

Development mode (no signing key, `dev=True`) answers unsigned requests from loopback clients
only; any other client is refused (403 `dev_mode`), so a dev setting shipped by mistake fails
closed off-host. A loopback peer is not enough either: a reverse proxy on the same host makes every
client loopback, and a web page whose name is re-pointed at 127.0.0.1 (DNS rebinding) reaches the
endpoint from the browser. So an unsigned request must also be addressed to a loopback name and
carry no forwarding header (the HTTP API's rule for a keyless server, `stepwell.loopback`); else
421 `misdirected`. Signed requests are not affected: the signature, not the address, admits them.

Both adapters ask `Endpoint.precheck` before reading a byte of the body: an unsigned, stale or
malformed request, or one declaring a body over the limit, is answered at once; the body is then
read with the limit counted while it streams, and only then is the signature verified. (A WSGI
server that buffers whole requests before calling the app, as waitress does, reads the body first
anyway; put such a server behind its own body limit.)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from http import HTTPStatus
from typing import Any

from stepwell.loopback import addressed_locally, is_loopback
from stepwell.push.endpoint import MAX_REQUEST_BYTES, Answer, Endpoint

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
StartResponse = Callable[..., Any]


def _dev_refusal(endpoint: Endpoint, peer: str | None, headers: Mapping[str, str]) -> Answer | None:
    """Development mode only: a refusal unless the peer is loopback and the request is addressed to a
    loopback name, not relayed by a proxy. `headers`: lower-case names."""
    if not endpoint.verifier.allow_unsigned:
        return None
    if not peer or not is_loopback(peer):
        return endpoint.refusal(403, "dev_mode", "development mode (unsigned) serves loopback clients only")
    if not addressed_locally(headers.get("host", ""), headers):
        return endpoint.refusal(
            421,
            "misdirected",
            "development mode (unsigned) answers only requests addressed to a loopback name (127.0.0.1, "
            "localhost, [::1]) and not relayed by a proxy (Forwarded, X-Forwarded-For, X-Real-IP); "
            "configure a signing key to serve it under another name or through a proxy",
        )
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
        headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope["headers"]}
        answer = _dev_refusal(self.endpoint, client[0] if client else None, headers)
        answer = answer or self.endpoint.precheck(scope["method"], headers)
        if answer is None:
            body = await _read_body(receive)
            if body is None:
                answer = self.endpoint.refusal(413, "too_large", "request body too large")
            else:
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
        headers = {
            key[5:].replace("_", "-").lower(): value for key, value in environ.items() if key.startswith("HTTP_")
        }
        if environ.get("CONTENT_LENGTH"):
            headers["content-length"] = environ["CONTENT_LENGTH"]  # WSGI keeps it out of the HTTP_ names
        answer = _dev_refusal(self.endpoint, environ.get("REMOTE_ADDR"), headers)
        answer = answer or self.endpoint.precheck(environ["REQUEST_METHOD"], headers)
        if answer is None:
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = -1
            if length < 0 or length > MAX_REQUEST_BYTES:
                answer = self.endpoint.refusal(413, "too_large", "request body missing a length, or too large")
            else:
                body = environ["wsgi.input"].read(length)
                answer = self.endpoint.handle_sync(environ["REQUEST_METHOD"], headers, body)
        status = f"{answer.status} {HTTPStatus(answer.status).phrase}"
        start_response(status, [*answer.headers.items(), ("content-length", str(len(answer.body)))])
        return [answer.body]
