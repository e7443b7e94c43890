"""A lean HTTP/1.1 keep-alive client for the dispatcher's plain-HTTP endpoints.

The dispatcher makes one small POST per step, so the cost of the HTTP client is most of the cost
of push mode. httpx/httpcore spent about 1.5 ms of CPU per request on loopback (pool bookkeeping
and a liveness probe of every pooled connection per request); this client spends a small fraction
of that: one write per request (head and body together), a head read to the blank line, a body
read by Content-Length (or chunked), and connections kept alive per address and reused while
young. A request is never sent twice by this client: whatever happens after the write counts.

It is used for `http://` endpoints only (httpx would speak HTTP/1.1 to them too: HTTP/2 needs TLS
there); `https://` endpoints keep httpx, for its TLS handling and HTTP/2. It connects to the address
the SSRF guard checked (it never resolves a name itself) and follows no redirects.

Errors: `ConnectFailed` (nothing was sent: the endpoint did not see the request) and `HttpFailure`
for anything after the request was sent. The caller bounds the time a request takes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

HEAD_LIMIT = 64 * 1024  # bytes of status line and headers


class ConnectFailed(Exception):
    """The connection could not be made: nothing was sent."""


class HttpFailure(Exception):
    """The request was sent (or may have been) and no complete answer came back."""


class TooLarge(HttpFailure):
    """The answer's body is over the cap."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: dict[str, str]  # lower-case names; a repeated header keeps its last value
    body: bytes


@dataclass(slots=True)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    idle_since: float = 0.0

    def usable(self, fresh_since: float) -> bool:
        """Idle since `fresh_since` or later and still open (a server that closed a kept-alive
        connection has left EOF in the reader). Young connections only: a server closes idle ones
        after its keep-alive timeout (2 s for gunicorn, 5 s for uvicorn), and a request written as it
        closes one is lost and counts as a failed attempt; a fresh connection avoids that race."""
        return self.idle_since >= fresh_since and not (self.reader.at_eof() or self.writer.is_closing())

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


@dataclass(slots=True)
class Http1Client:
    """Keep-alive connections per (address, port); at most `max_idle` kept idle per address."""

    max_idle: int = 100
    connect_timeout: float = 5.0
    max_idle_seconds: float = 1.5
    _idle: dict[tuple[str, int], deque[_Connection]] = field(default_factory=dict)

    async def post(
        self, address: str, port: int, target: str, headers: Mapping[str, str], body: bytes, *, max_bytes: int
    ) -> Answer:
        """POST `body` to `target` (path and query) at address:port."""
        head = _head(target, headers, len(body))
        key = (address, port)
        connection = await self._connection(key)
        try:
            connection.writer.write(head + body)
            await connection.writer.drain()  # flow control for a large body; at once for a small one
            answer, keep = await _read_answer(connection.reader, max_bytes)
        except BaseException:
            connection.close()  # never retried here: the endpoint may have seen the request
            raise
        if keep:
            self._release(key, connection)
        else:
            connection.close()
        return answer

    async def _connection(self, key: tuple[str, int]) -> _Connection:
        idle = self._idle.get(key)
        fresh_since = time.monotonic() - self.max_idle_seconds
        while idle:
            connection = idle.pop()
            if connection.usable(fresh_since):
                return connection
            connection.close()
        try:
            async with asyncio.timeout(self.connect_timeout):
                reader, writer = await asyncio.open_connection(key[0], key[1], limit=HEAD_LIMIT)
        except (OSError, TimeoutError) as error:
            raise ConnectFailed(f"{type(error).__name__}: {error}") from None
        return _Connection(reader, writer)

    def _release(self, key: tuple[str, int], connection: _Connection) -> None:
        idle = self._idle.setdefault(key, deque())
        if len(idle) >= self.max_idle:
            connection.close()
        else:
            connection.idle_since = time.monotonic()
            idle.append(connection)

    def close(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()


def _head(target: str, headers: Mapping[str, str], length: int) -> bytes:
    lines = [f"POST {target} HTTP/1.1"]
    lines += [f"{name}: {value}" for name, value in headers.items() if name.lower() != "content-length"]
    lines.append(f"content-length: {length}")
    if any("\r" in line or "\n" in line for line in lines):
        raise ValueError("a request header or target contains a line break")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _read_answer(reader: asyncio.StreamReader, max_bytes: int) -> tuple[Answer, bool]:
    """The answer and whether the connection may be reused."""
    first = True
    while True:
        try:
            raw = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as error:
            where = "before an answer" if first and not error.partial else "in the middle of the answer's head"
            raise HttpFailure(f"connection closed {where}") from None
        except asyncio.LimitOverrunError:
            raise HttpFailure(f"answer head over {HEAD_LIMIT} bytes") from None
        except (ConnectionResetError, BrokenPipeError) as error:
            raise HttpFailure(f"connection reset: {error}") from None
        first = False
        version, status, headers = _parse_head(raw)
        if 100 <= status < 200:  # an interim answer (100 Continue): the real one follows
            continue
        body = await _read_body(reader, headers, max_bytes)
        keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
        return Answer(status, headers, body), keep


def _parse_head(raw: bytes) -> tuple[str, int, dict[str, str]]:
    lines = raw[:-4].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise HttpFailure(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            raise HttpFailure(f"bad header line: {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    return parts[0], int(parts[1]), headers


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str], max_bytes: int) -> bytes:
    try:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return await _read_chunked(reader, max_bytes)
        length = headers.get("content-length")
        if length is None:  # delimited by the end of the connection: never kept alive
            headers["connection"] = "close"
            return await _read_to_end(reader, max_bytes)
        if not length.isdigit():
            raise HttpFailure(f"bad content-length {length[:40]!r}")
        if int(length) > max_bytes:
            raise TooLarge(f"answer larger than {max_bytes} bytes")
        return await reader.readexactly(int(length))
    except asyncio.IncompleteReadError:
        raise HttpFailure("connection closed in the middle of the answer's body") from None
    except asyncio.LimitOverrunError:
        raise HttpFailure("a chunk size line over the head limit") from None
    except (ConnectionResetError, BrokenPipeError) as error:
        raise HttpFailure(f"connection reset: {error}") from None


async def _read_chunked(reader: asyncio.StreamReader, max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        line = await reader.readuntil(b"\r\n")
        try:
            length = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise HttpFailure(f"bad chunk size line {line[:40]!r}") from None
        if length == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers, ignored
                pass
            return b"".join(chunks)
        size += length
        if size > max_bytes:
            raise TooLarge(f"answer larger than {max_bytes} bytes")
        chunks.append(await reader.readexactly(length))
        await reader.readexactly(2)


async def _read_to_end(reader: asyncio.StreamReader, max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while data := await reader.read(64 * 1024):
        size += len(data)
        if size > max_bytes:
            raise TooLarge(f"answer larger than {max_bytes} bytes")
        chunks.append(data)
    return b"".join(chunks)
