"""The dispatcher's HTTP/1.1 client against a real server on loopback that answers as scripted."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from stepwell.push.http1 import ConnectFailed, Http1Client, HttpFailure, TooLarge

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    return head + await reader.readexactly(length)


def serve(script: Script, test: Callable[[Http1Client, int, list[int]], Awaitable[None]]) -> None:
    """Run `test(client, port, connections)` against a server whose every connection runs `script`."""

    async def main() -> None:
        connections: list[int] = []

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            connections.append(1)
            try:
                await script(reader, writer)
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = Http1Client()
        try:
            async with asyncio.timeout(10):
                await test(client, port, connections)
        finally:
            client.close()
            server.close()

    asyncio.run(main())


async def answer_forever(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        await read_request(reader)
        writer.write(OK)
        await writer.drain()


def test_a_connection_is_kept_alive_and_reused() -> None:
    async def test(client: Http1Client, port: int, connections: list[int]) -> None:
        for _ in range(3):
            answer = await client.post("127.0.0.1", port, "/push?x=1", {"host": "svc"}, b'{"a":1}', max_bytes=100)
            assert (answer.status, answer.body, answer.headers["content-type"]) == (200, b"{}", "application/json")
        assert len(connections) == 1

    serve(answer_forever, test)


def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(OK)
        await writer.drain()  # then the handler closes it, as a server's keep-alive timeout does

    async def test(client: Http1Client, port: int, connections: list[int]) -> None:
        await client.post("127.0.0.1", port, "/", {}, b"1", max_bytes=100)
        await asyncio.sleep(0.1)  # the close reaches the client
        assert (await client.post("127.0.0.1", port, "/", {}, b"2", max_bytes=100)).status == 200
        assert len(connections) == 2

    serve(once, test)


def test_chunked_answers_interim_answers_and_answers_delimited_by_the_close() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n")
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n\r\nuntil the end")
        await writer.drain()

    async def test(client: Http1Client, port: int, connections: list[int]) -> None:
        assert (await client.post("127.0.0.1", port, "/", {}, b"1", max_bytes=100)).body == b"abcde"
        assert (await client.post("127.0.0.1", port, "/", {}, b"2", max_bytes=100)).body == b"until the end"
        assert not client._idle[("127.0.0.1", port)]  # an answer delimited by the close is not kept

    serve(script, test)


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\n01234567890",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n6\r\n012345\r\n6\r\n678901\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n01234567890",
    ],
)
def test_an_answer_over_the_cap_is_refused(answer: bytes) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer)
        await writer.drain()

    async def test(client: Http1Client, port: int, connections: list[int]) -> None:
        with pytest.raises(TooLarge):
            await client.post("127.0.0.1", port, "/", {}, b"1", max_bytes=10)

    serve(script, test)


def test_a_request_the_server_drops_fails_and_is_not_sent_again() -> None:
    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)  # seen, then the connection closes without an answer

    async def test(client: Http1Client, port: int, connections: list[int]) -> None:
        with pytest.raises(HttpFailure, match="closed before an answer"):
            await client.post("127.0.0.1", port, "/", {}, b"1", max_bytes=10)
        assert len(connections) == 1

    serve(drop, test)


def test_garbage_is_a_failure_and_a_refused_connection_sends_nothing() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SMTP ready\r\n\r\n")
        await writer.drain()

    async def test(client: Http1Client, port: int, connections: list[int]) -> None:
        with pytest.raises(HttpFailure, match="status line"):
            await client.post("127.0.0.1", port, "/", {}, b"1", max_bytes=10)
        with pytest.raises(ValueError, match="line break"):
            await client.post("127.0.0.1", port, "/", {"x": "a\r\nevil: 1"}, b"1", max_bytes=10)
        with pytest.raises(ConnectFailed):
            await client.post("127.0.0.1", 1, "/", {}, b"1", max_bytes=10)

    serve(garbage, test)


@pytest.mark.parametrize(
    ("answer", "what"),
    [
        (b"HTTP/1.1 2x0 OK\r\ncontent-length: 2\r\n\r\n{}", "status line"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\ncontent-length: 2\r\n\r\n{}", "header"),
        (b"HTTP/1.1 200 OK\r\ncontent-length: two\r\n\r\n{}", "content-length"),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\n{}", "content-length"),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", "chunk"),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n", "chunk"),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n{}", "transfer-encoding"),
        (b"HTTP/1.1 200 OK\r\nx-long: " + b"a" * 70_000, "too long"),
    ],
)
def test_an_answer_h11_refuses_is_a_failure_at_once_not_a_hang(answer: bytes, what: str) -> None:
    """The server sends a malformed answer and keeps the connection open: the client fails on what
    it read (HttpFailure naming the fault, never TooLarge), without waiting for the close."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer)
        await writer.drain()
        await reader.read()  # until the client closes

    async def test(client: Http1Client, port: int, connections: list[int]) -> None:
        with pytest.raises(HttpFailure, match=f"(?i){what}") as failure:
            await client.post("127.0.0.1", port, "/", {}, b"1", max_bytes=100)
        assert not isinstance(failure.value, TooLarge)
        assert not client._idle.get(("127.0.0.1", port))  # a connection that failed is not kept

    serve(script, test)


def test_an_answer_cut_in_its_body_is_a_failure() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n01234")
        await writer.drain()  # then the handler closes the connection

    async def test(client: Http1Client, port: int, connections: list[int]) -> None:
        with pytest.raises(HttpFailure, match="closed in the middle of the answer"):
            await client.post("127.0.0.1", port, "/", {}, b"1", max_bytes=100)

    serve(script, test)


def test_the_request_head_names_the_address_as_host_and_carries_the_body_length() -> None:
    heads: list[bytes] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            heads.append(await read_request(reader))
            writer.write(OK)
            await writer.drain()

    async def test(client: Http1Client, port: int, connections: list[int]) -> None:
        await client.post("127.0.0.1", port, "/a?b=1", {"content-length": "999"}, b"12345", max_bytes=100)
        await client.post("127.0.0.1", port, "/", {"Host": "svc.example"}, b"", max_bytes=100)
        first, second = (head.lower().split(b"\r\n") for head in heads)
        assert first[0] == b"post /a?b=1 http/1.1"
        assert f"host: 127.0.0.1:{port}".encode() in first and b"content-length: 5" in first
        assert heads[0].endswith(b"\r\n\r\n12345")
        assert b"host: svc.example" in second and b"content-length: 0" in second
        assert sum(line.startswith(b"host:") for line in second) == 1

    serve(script, test)
