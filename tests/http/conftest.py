"""A real uvicorn server on a free loopback port, serving an App on the test's backend (both stores)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

import stepwell
from stepwell.http import Limits, ServerThread

App = stepwell.App


def make_app(database_url: str) -> stepwell.App:
    """The functions every HTTP test serves: plain, failing, ordered, fanning out."""
    app = stepwell.App("http-tests", database_url=database_url)

    @app.function("greet", trigger=stepwell.on_event("user.created"), retries=0)
    def greet(ctx: stepwell.Context) -> dict[str, Any]:
        return {"hello": ctx.event.data.get("name")}

    @app.function("explode", trigger=stepwell.on_event("boom"), retries=0)
    def explode(ctx: stepwell.Context) -> None:
        ctx.step.run("first", lambda: 1)
        raise ValueError("kaboom")

    @app.function("ordered", trigger=stepwell.on_event("ordered"), ordering_key="event.data.k", retries=0)
    def ordered(ctx: stepwell.Context) -> int:
        return 1

    @app.function("child", retries=0)
    def child(ctx: stepwell.Context) -> Any:
        return ctx.event.data

    @app.function("parent", trigger=stepwell.on_event("fan"), retries=0)
    def parent(ctx: stepwell.Context) -> int:
        return ctx.step.fan_out("kids", child, [1, 2, 3]).completed

    return app


@dataclass
class Served:
    app: stepwell.App
    url: str
    http: httpx.Client
    admin: str  # a token with the admin scope
    tokens: dict[str, str]  # scope name -> a token with only that scope

    def headers(self, scope: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[scope]}"}

    def drain(self, seconds: float = 10.0) -> None:
        """Run a worker in this thread until no run is ready (and give up after `seconds`)."""
        import asyncio

        from stepwell.runtime.worker import WorkerOptions

        async def main() -> None:
            stop = asyncio.Event()
            worker = self.app.worker(WorkerOptions(concurrency=4, poll_interval=0.02))
            task = asyncio.create_task(worker.run(stop))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + seconds
            while loop.time() < deadline:
                await asyncio.sleep(0.05)
                stats = await asyncio.to_thread(self.app.store.queue_stats)
                if stats.ready == 0 and stats.running == 0:
                    break
            stop.set()
            await task

        asyncio.run(main())


ServeFactory = Callable[..., Served]


@pytest.fixture
def serve(database_url: str) -> Iterator[ServeFactory]:
    """`serve(auth=True, limits=Limits(...), app=None)`: start a server, with one token per scope."""
    started: list[tuple[ServerThread, httpx.Client, stepwell.App]] = []

    def start(*, auth: bool = True, limits: Limits | None = None, app: stepwell.App | None = None) -> Served:
        app = app or make_app(database_url)
        tokens = {scope: app.create_api_key(f"test {scope}", [scope])[1] for scope in ("ingest", "read", "operate",
                                                                                      "admin")}  # fmt: skip
        server = ServerThread(app, host="127.0.0.1", port=0, auth=auth, limits=limits).start()
        client = httpx.Client(base_url=server.url, timeout=30)
        started.append((server, client, app))
        return Served(app, server.url, client, tokens["admin"], tokens)

    yield start
    for server, client, app in started:
        client.close()
        server.stop()
        app.close()


@pytest.fixture
def served(serve: ServeFactory) -> Served:
    return serve()
