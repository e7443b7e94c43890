"""The user's web app in the push tests: FastAPI (ASGI) and Flask (WSGI) serving the same functions.

Configured by the environment so that it runs as its own process (uvicorn, waitress) and can be
SIGKILLed: STEPWELL_DATABASE_URL (where it registers), STEPWELL_SERVE_URL, STEPWELL_SIGNING_KEY,
PUSH_LEDGER (a file that gets one line per executed step, to count executions), PUSH_SLOW_STEP
(seconds the `slow` step sleeps, to kill the app in the middle of it).
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from typing import Any

import stepwell

app = stepwell.App("webshop")
FAST = stepwell.Backoff(timedelta(milliseconds=50), jitter=0)


def ledger(name: str) -> None:
    path = os.environ.get("PUSH_LEDGER")
    if path:
        with open(path, "a") as file:
            file.write(name + "\n")


def record(name: str, value: Any = None) -> Any:
    ledger(name)
    return value


@app.function(
    "checkout",
    trigger=stepwell.on_event("order.placed"),
    retries=3,
    backoff=FAST,
)
def checkout(ctx: stepwell.Context) -> dict[str, Any]:
    total = ctx.step.run("price", record, "price", ctx.event.data["amount"] * 2)
    ctx.step.run("slow", lambda: (time.sleep(float(os.environ.get("PUSH_SLOW_STEP", "0"))), record("slow"))[1])
    ctx.step.sleep("cool-down", "50ms")
    receipt = ctx.step.invoke("receipt", "receipt", {"total": total})
    approval = ctx.step.wait_for_event("approval", event="order.approved", match="data.order", timeout="30s")
    ctx.step.send_event("notify", "order.done", {"order": ctx.event.data["order"]})
    return {"total": total, "receipt": receipt, "approved": approval is not None}


@app.function("receipt", retries=1)
async def receipt(ctx: stepwell.Context) -> str:
    number = await ctx.step.run("number", record, "number", f"R-{ctx.event.data['total']}")
    return str(number)


@app.function("score", retries=0)
def score(ctx: stepwell.Context) -> int:
    return int(ctx.event.data["n"]) * 10


@app.function("scores", trigger=stepwell.on_event("scores.requested"), retries=0)
def scores(ctx: stepwell.Context) -> dict[str, int]:
    fan = ctx.step.fan_out("all", "score", [{"n": n} for n in range(int(ctx.event.data["count"]))])
    return {"total": fan.total, "completed": fan.completed}


@app.function("reduce", trigger=stepwell.on_event("reduce.requested"), retries=0)
def reduce(ctx: stepwell.Context) -> dict[str, Any]:
    """The reduce side of a fan-out, pushed: the children's results are read as a pulled run reads them."""
    items = [{"n": n} for n in range(int(ctx.event.data["count"]))] + [{"n": "bad"}]  # the last child fails
    fan = ctx.step.fan_out("all", "score", items, tolerate=1)
    total = ctx.step.run("sum", lambda: sum(r for r in fan.results(page_size=7) if r is not None))
    return {"sum": total, "failed": [child.index for child in fan.failures()], "last": list(fan.results())[-2:]}


@app.function("reduce-async", trigger=stepwell.on_event("reduce.requested"), retries=0)
async def reduce_async(ctx: stepwell.Context) -> int:
    fan = await ctx.step.fan_out("all", "score", [{"n": n} for n in range(int(ctx.event.data["count"]))])
    return sum(fan.results())


@app.function("chatty", trigger=stepwell.on_event("chatty.requested"), retries=0)
def chatty(ctx: stepwell.Context) -> int:
    """Logs outside steps (replayed by every request) and inside them (run once)."""
    ctx.log.info("starting for %s", ctx.event.data["who"])
    a = ctx.step.run("a", lambda: ctx.log.info("in a") or 1)
    ctx.log.info("between")
    b = ctx.step.run("b", lambda: ctx.log.warning("in b") or 2)
    ctx.log.debug("below INFO: not stored")
    ctx.log.info("done")
    return a + b


@app.function(
    "flaky",
    trigger=stepwell.on_event("flaky.requested"),
    retries=1,
    backoff=FAST,
)
def flaky(ctx: stepwell.Context) -> str:
    ctx.step.run("boom", lambda: (record("boom"), os.path.exists(os.environ.get("PUSH_FIXED", "/nonexistent")))[1]
                 or _fail())  # fmt: skip
    return "fixed"


def _fail() -> None:
    raise RuntimeError("not fixed yet")


def _dev() -> bool:
    return not os.environ.get("STEPWELL_SIGNING_KEY")


def fastapi_app() -> Any:
    from fastapi import FastAPI

    web = FastAPI()

    @web.get("/hello")
    def hello() -> dict[str, str]:  # live traffic beside the queue's
        return {"hello": "world"}

    web.mount("/api/stepwell", app.asgi(dev=_dev()))
    return web


def flask_app() -> Any:
    from flask import Flask
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    web = Flask(__name__)

    @web.get("/hello")
    def hello() -> dict[str, str]:
        return {"hello": "world"}

    web.wsgi_app = DispatcherMiddleware(web.wsgi_app, {"/api/stepwell": app.wsgi(dev=_dev())})  # type: ignore[method-assign]
    return web
