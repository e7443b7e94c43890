"""Push mode, the microprocess pattern: a nightly job fans out one child per company, served by the web app.

Run the demo (a temporary SQLite file, everything on loopback):   python -m examples.push_mode

In production the pieces are separate processes: the web app (this module's `web`, under uvicorn, with
STEPWELL_SERVE_URL, STEPWELL_SERVER, STEPWELL_TOKEN and STEPWELL_SIGNING_KEY set) and
`stepwell server --signing-key ...`, which runs the cron schedule and the push dispatcher. Here the
demo starts both on threads of one process, unsigned (development mode, loopback only).
"""

from __future__ import annotations

import asyncio
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

import stepwell
from stepwell.push.dispatcher import PushOptions

credit = stepwell.App("credit-batch")
reports: list[dict[str, int]] = []


@credit.function("score-company", retries=3)
def score_company(ctx: stepwell.Context[Any]) -> int:
    name = ctx.event.data["company"]
    return ctx.step.run("score", lambda: 300 + sum(map(ord, name)) % 550)


@credit.function(
    "nightly-scores", triggers=[stepwell.cron("0 2 * * *"), stepwell.on_event("scores.requested")], retries=1
)
def nightly_scores(ctx: stepwell.Context[Any]) -> dict[str, int]:
    companies = ctx.step.run("list-companies", lambda: [f"company-{n}" for n in range(50)])
    scored = ctx.step.fan_out("score-all", score_company, [{"company": c} for c in companies], tolerate=0.05)
    summary = {"total": scored.total, "completed": scored.completed, "failed": scored.failed}
    ctx.step.run("email-report", lambda: reports.append(summary) or True)  # the "email"
    return summary


async def hello(request: Any) -> JSONResponse:
    return JSONResponse({"hello": "live traffic"})


def web(url: str | None = None, dev: bool = True) -> Starlette:
    """The user's web app: live routes and the queue's endpoint, one image."""
    return Starlette(routes=[Route("/hello", hello), Mount("/api/stepwell", app=credit.asgi(url=url, dev=dev))])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def demo(database_url: str) -> dict[str, int]:
    credit.use_database(database_url)
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api/stepwell/"
    server = uvicorn.Server(uvicorn.Config(web(url), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    engine = stepwell.App("server", database_url=database_url)  # `stepwell server`: no user code
    while {"nightly-scores", "score-company"} - set(engine.store.push_endpoints()):
        time.sleep(0.05)  # the web app registers itself on a background thread
    stop = asyncio.Event()
    loop = asyncio.new_event_loop()

    async def dispatch() -> None:
        options = PushOptions(dev=True, allow_loopback=True, poll_interval=0.05)
        await asyncio.gather(engine.run_push_dispatcher(stop, options), engine.run_maintenance(stop, interval=0.2))

    dispatcher = threading.Thread(target=loop.run_until_complete, args=(dispatch(),), daemon=True)
    dispatcher.start()
    try:
        event_id = engine.send("scores.requested", {})
        [run] = engine.runs(event_id=event_id)
        while not (current := engine.get_run(run.id)).status.is_terminal:
            if any(step.id == "score-all" for step in current.steps):
                progress = engine.fan_out_progress(run.id, "score-all")
                print(f"progress: {progress.completed}/{progress.total or '?'} scored")
            time.sleep(0.2)
        print("report:", current.output)
        return dict(current.output)
    finally:
        loop.call_soon_threadsafe(stop.set)
        dispatcher.join(10)
        server.should_exit = True
        engine.close()
        credit.close()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        demo(f"sqlite:///{Path(tmp) / 'push.db'}")
