"""What every answer of the server gets, whatever route (API, /metrics, dashboard) produced it.

- A request id: made here, kept in the request's state for the routes (`request_id`), sent back as
  `X-Request-Id` and inside every error body, and written beside the details of a failure in the
  log, so that a client's report of a 500 or a 503 leads to the log line without the answer itself
  carrying the server's internals.
- `X-Content-Type-Options: nosniff` (the dashboard adds its own, with its CSP, before this).
- Without API keys, answers only requests addressed to a loopback name. A keyless server listens
  on loopback only (`check_bind`), but a web page can still reach it by DNS rebinding: its name
  is re-pointed at 127.0.0.1, the browser treats the server as that page's own origin, and only
  the Host header (the attacker's name) tells the difference. Such a request gets 421, and so does
  one that came through a reverse proxy (Forwarded, X-Forwarded-For, X-Real-IP): a proxy on this
  host would hand the keyless server to whoever reaches the proxy. The rule is `stepwell.loopback`
  (the unsigned development push endpoint applies it too).
"""

from __future__ import annotations

import secrets

import orjson
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stepwell.loopback import addressed_locally
from stepwell.loopback import is_loopback as is_loopback  # re-exported: http/__init__.py, http/server.py

NOSNIFF = (b"x-content-type-options", b"nosniff")


def new_request_id() -> str:
    return secrets.token_hex(8)


def request_id(request: Request) -> str:
    """The id the envelope gave this request (a fresh one for an app served without it)."""
    state = request.scope.setdefault("state", {})
    if "request_id" not in state:
        state["request_id"] = new_request_id()
    return str(state["request_id"])


class Envelope:
    """ASGI middleware around the whole server; `keyless`: answer loopback names only (see above)."""

    def __init__(self, app: ASGIApp, *, keyless: bool) -> None:
        self.app = app
        self.keyless = keyless

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = new_request_id()
        scope.setdefault("state", {})["request_id"] = rid
        stamp = [(b"x-request-id", rid.encode())]

        async def send_stamped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                have = {name.lower() for name, _ in headers}
                message["headers"] = [*headers, *stamp, *([] if NOSNIFF[0] in have else [NOSNIFF])]
            await send(message)

        if self.keyless and not self._local(scope):
            await self._misdirected(send_stamped, rid)
            return
        await self.app(scope, receive, send_stamped)

    @staticmethod
    def _local(scope: Scope) -> bool:
        """Addressed to a loopback name, and not relayed by a proxy."""
        headers = {name.decode("latin-1").lower(): value for name, value in scope["headers"]}
        return addressed_locally(headers.get("host", b"").decode("latin-1"), headers)

    @staticmethod
    async def _misdirected(send: Send, rid: str) -> None:
        body = orjson.dumps(
            {
                "code": "misdirected",
                "message": "this server runs without API keys and answers only requests addressed to a loopback "
                "name (127.0.0.1, localhost, [::1]), not relayed by a proxy; use one of those, or serve with API keys",
                "field": "Host",
                "request_id": rid,
            }
        )
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 421, "headers": headers})
        await send({"type": "http.response.body", "body": body})
