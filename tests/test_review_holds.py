"""Evidence for checklist items the security review of 2026-11-29 found to hold but untested
(docs/security.md, "Review of 2026-11-29"): the SSRF guard against spellings of loopback and
metadata addresses, the push answer's size cap, and the dashboard's redirect after login."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, urlsplit

import httpx
import pytest

from stepwell.push.delivery import EndpointFailed, Transport
from stepwell.push.guard import Guard, UnsafeEndpoint
from stepwell.push.signing import Signer, Verifier, new_key, parse_keys
from tests.dashboard.conftest import Served, served

__all__ = ["served"]  # the dashboard's fixture, imported for pytest


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://2130706433/push", "loopback"),  # 127.0.0.1 as one decimal number
        ("http://0x7f000001/push", "loopback"),  # ... in hex
        ("http://0177.0.0.1/push", "loopback"),  # ... with an octal part
        ("http://127.1/push", "loopback"),  # ... short form
        ("http://2852039166/latest/meta-data/", "metadata"),  # 169.254.169.254 as a number
        ("http://localhost:8000/push", "loopback"),  # a name: judged on what it resolves to
        ("http://[fe80::1]/push", "link-local"),
        ("http://[fd12:3456::1]/push", "private"),  # unique local
        ("http://[::169.254.169.254]/push", "metadata"),  # IPv4-compatible (deprecated), judged as IPv4
        ("http://[::ffff:169.254.169.254]/push", "metadata"),  # IPv4-mapped
        ("http://[64:ff9b::a9fe:a9fe]/push", "metadata"),  # NAT64 of the metadata address
    ],
)
def test_the_ssrf_guard_sees_through_other_spellings_of_an_address(url: str, reason: str) -> None:
    with pytest.raises(UnsafeEndpoint, match=reason):
        asyncio.run(Guard().resolve(url))


class _Huge(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.end_headers()  # no length: the body runs until the connection closes
        for _ in range(64):
            self.wfile.write(b" " * 65536)

    def log_message(self, *args: object) -> None: ...


@pytest.fixture
def huge() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Huge)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/push"
    server.shutdown()


def test_the_dispatcher_stops_reading_an_answer_at_its_cap(huge: str) -> None:
    keys = parse_keys(new_key())

    async def push() -> None:
        async with httpx.AsyncClient(trust_env=False) as client:
            transport = Transport(client, Guard(allow_loopback=True), Signer(keys), Verifier(keys), 1 << 20)
            await transport.post(huge, b"{}", "run-review", datetime.now(UTC))

    with pytest.raises(EndpointFailed, match="larger than 1048576 bytes"):
        asyncio.run(push())


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example/x",
        "https://evil.example/x",
        "/\\evil.example",
        "\\\\evil.example",
        "/\t/evil.example",
        "http:evil.example",
        "/%2F/evil.example",
        "javascript:alert(1)",
    ],
)
def test_the_redirect_after_login_stays_on_the_dashboard(served: Served, target: str) -> None:
    client = httpx.Client(base_url=served.url, headers={"origin": served.url})
    response = client.post(f"/login?next={quote(target, safe='')}", data={"token": served.tokens["read"]})
    assert response.status_code == 303
    location = response.headers["location"]
    parts = urlsplit(location)
    assert not parts.scheme and not parts.netloc and location.startswith("/") and not location.startswith("//")
    assert "\\" not in location and "\t" not in location
