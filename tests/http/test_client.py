"""stepwell.Client against a real server: the App's methods over HTTP, sync and async, and retries that
honour Retry-After without ever starting a run twice."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import stepwell
from stepwell.errors import EventRejected, RemoteError, RunNotFound, TimeoutExpired
from tests.http.conftest import Served


def test_the_client_sends_reads_waits_cancels_replays_and_redrives(served: Served) -> None:
    with stepwell.Client(served.url, served.admin) as client:
        event_id = client.send("user.created", {"name": "ada"})
        [run] = client.runs(event_id=event_id)
        assert run.function == "greet" and run.status == "queued"
        ids = client.send([{"name": "boom"}, {"name": "user.created", "data": {"name": "bo"}}])
        assert len(ids) == 2 and client.event(ids[0]).run_ids
        draining = threading.Thread(target=served.drain)
        draining.start()
        done = client.wait(run.id, timeout=20)
        assert (done.status, done.output) == ("completed", {"hello": "ada"})
        draining.join()  # the queue is drained: what follows is not raced by the worker
        [dead] = client.dead_letters(function="explode")
        assert dead.error.type == "ValueError"
        assert client.redrive([dead.run_id]) == [dead.run_id]
        new_run = client.replay(run.id)
        assert client.cancel(new_run) is True and client.get_run(new_run).status == "cancelled"
        with pytest.raises(RunNotFound):
            client.get_run("nope")
        with pytest.raises(EventRejected):
            client.send("bad name!")
        [queued] = client.runs(event_id=client.send("user.created", {"name": "cy"}))
        with pytest.raises(TimeoutExpired):  # no worker runs now: the run stays queued
            client.wait(queued.id, timeout=0.2)


def test_the_async_client_does_the_same(served: Served) -> None:
    async def main() -> None:
        async with stepwell.Client(served.url, served.admin) as client:
            event_id = await client.asend("user.created", {"name": "cy"})
            [run] = await client.aruns(event_id=event_id)
            assert (await client.aget_run(run.id)).status == "queued"
            assert await client.acancel(run.id)
            assert (await client.await_run(run.id, timeout=5)).status == "cancelled"
            assert await client.adead_letters() == []
            replayed = await client.areplay(run.id)
            assert (await client.aget_run(replayed)).replay_of == run.id

    asyncio.run(main())


def test_a_key_without_the_scope_is_a_remote_error(served: Served) -> None:
    with stepwell.Client(served.url, served.tokens["ingest"]) as client:
        client.send("user.created")
        with pytest.raises(RemoteError) as refused:
            client.runs()
    assert (refused.value.status, refused.value.code) == (403, "forbidden")


class Flaky:
    """A proxy in front of the real server that loses answers: the first `lose` POSTs are forwarded
    (and committed) but answered 503, the next `busy` are refused 429 unforwarded, both with Retry-After."""

    def __init__(self, upstream: str, *, lose: int, busy: int, retry_after: str = "1", lost_status: int = 503) -> None:
        self.upstream, self.lose, self.busy, self.retry_after = upstream, lose, busy, retry_after
        self.lost_status = lost_status  # 503, or 504: the server gave up waiting for the store
        self.bodies: list[bytes] = []
        self.times: list[float] = []

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        self.bodies.append(body)
        self.times.append(time.monotonic())
        if self.busy and len(self.bodies) > self.lose and len(self.bodies) <= self.lose + self.busy:
            return Response(b'{"code":"saturated","message":"busy","field":null}', 429,
                            {"Retry-After": self.retry_after}, media_type="application/json")  # fmt: skip
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "content-type")}
        async with httpx.AsyncClient() as upstream:
            answer = await upstream.request(request.method, self.upstream + request.url.path, content=body,
                                            params=request.query_params, headers=headers)  # fmt: skip
        if len(self.bodies) <= self.lose:
            return Response(b'{"code":"store_unavailable","message":"lost","field":null}', self.lost_status,
                            {"Retry-After": self.retry_after}, media_type="application/json")  # fmt: skip
        return Response(answer.content, answer.status_code, media_type="application/json")


def _run_asgi(app: Starlette) -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning"))
    thread = threading.Thread(target=server.run, args=([sock],), daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(10)
    sock.close()


@pytest.mark.parametrize("lost_status", [503, 504])
def test_retries_honour_retry_after_and_a_lost_answer_never_duplicates(served: Served, lost_status: int) -> None:
    flaky = Flaky(served.url, lose=1, busy=1, lost_status=lost_status)
    proxy = Starlette(routes=[Route("/{path:path}", flaky.handle, methods=["GET", "POST"])])
    for url in _run_asgi(proxy):
        begun = time.monotonic()
        with stepwell.Client(url, served.tokens["ingest"]) as client:
            event_id = client.send("user.created", {"name": "once"})
        elapsed = time.monotonic() - begun
    assert len(flaky.bodies) == 3 and len(set(flaky.bodies)) == 1, "every try carried the same event id"
    assert flaky.times[1] - flaky.times[0] >= 0.95 and flaky.times[2] - flaky.times[1] >= 0.95, "Retry-After: 1"
    assert elapsed < 10
    [run] = served.app.runs()
    assert run.event_id == event_id, "the event whose answer was lost started exactly one run"


def test_a_batch_is_sent_in_chunks_of_1000_with_ids_in_order(served: Served) -> None:
    events = [{"name": "nobody.listens", "data": {"i": i}} for i in range(2500)]
    with stepwell.Client(served.url, served.admin) as client:
        ids = client.send(events)
        assert len(ids) == 2500 and len(set(ids)) == 2500
        assert client.event(ids[1234]).data == {"i": 1234}
