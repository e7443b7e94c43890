"""What the dashboard tests share: an app with hostile data, a worker on a thread, and a browser.

The browser is Debian's chromium (/usr/bin/chromium, installed by scripts/setup) driven by
Playwright: Playwright never downloads one.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import stepwell
from stepwell.runtime.worker import WorkerOptions

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]  # fmt: skip
HOSTILE = '<script>alert("x")</script> \' " \u202eevil\u202c <img src=x onerror=alert(1)>'
FLAKY = {"fail": True}  # flipped by a test: the redriven run then completes


def make_app(database_url: str) -> stepwell.App:
    app = stepwell.App("dashboard-tests", database_url=database_url, max_event_bytes=8 * 1024 * 1024)

    @app.function("transcribe", trigger=stepwell.on_event("sermon.uploaded"), retries=0)
    def transcribe(ctx: stepwell.Context) -> dict[str, Any]:
        ctx.step.run("fetch-metadata", lambda: {"length": 3})
        ctx.step.sleep("cool-down", "1ms")
        ctx.step.run("transcribe", lambda: "text")
        return {"chars": 4, "echo": ctx.event.data}

    @app.function("billing", trigger=stepwell.on_event("invoice.due"), retries=0)
    def billing(ctx: stepwell.Context) -> str:
        def charge() -> str:
            if FLAKY["fail"] or ctx.event.data.get("always_fail"):
                raise ValueError(HOSTILE)
            return "charged"

        return str(ctx.step.run("charge", charge))

    @app.function("ordered", trigger=stepwell.on_event("ordered"), ordering_key="event.data.k", retries=0)
    def ordered(ctx: stepwell.Context) -> int:
        return 1

    @app.function("child", retries=0)
    def child(ctx: stepwell.Context) -> Any:
        return ctx.event.data

    @app.function("parent", trigger=stepwell.on_event("fan"), retries=0)
    def parent(ctx: stepwell.Context) -> int:
        return ctx.step.fan_out("kids", child, [1, 2, 3]).completed

    @app.function("shaky-child", retries=0)
    def shaky_child(ctx: stepwell.Context) -> Any:
        if FLAKY["fail"] and ctx.event.data == 1:
            raise ValueError("child 1 failed")
        return ctx.event.data

    @app.function("shaky-parent", trigger=stepwell.on_event("fan.shaky"), retries=0)
    def shaky_parent(ctx: stepwell.Context) -> int:
        return ctx.step.fan_out("kids", shaky_child, [0, 1, 2]).completed

    return app


@contextmanager
def worker_thread(app: stepwell.App) -> Iterator[None]:
    """A real worker polling every 20 ms on a thread, for the length of the block."""
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def main() -> None:
        await app.worker(WorkerOptions(concurrency=4, poll_interval=0.02)).run(stop)

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    try:
        yield
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=10)
