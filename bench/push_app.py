"""The web app of `python -m bench push`: the same two functions served by push (uvicorn) or pulled.

`app_named(name)` builds an app with a no-op function and a ten-step one; `web()` (an ASGI factory for
uvicorn) serves one by push, registered in $STEPWELL_DATABASE_URL at $STEPWELL_SERVE_URL, unsigned
(development mode: loopback only).
"""

from __future__ import annotations

from typing import Any

import stepwell

STEPS = 10


def app_named(name: str, database_url: str | None = None) -> stepwell.App:
    app = stepwell.App(name, database_url=database_url)

    @app.function("noop", trigger=stepwell.on_event("bench.noop"), retries=0)
    def noop(ctx: stepwell.Context) -> None:
        return None

    @app.function("steps", trigger=stepwell.on_event("bench.steps"), retries=0)
    def steps(ctx: stepwell.Context) -> int:
        total = 0
        for n in range(STEPS):
            total += ctx.step.run(f"s{n}", lambda n=n: n)
        return total

    return app


def web() -> Any:
    return app_named("bench-push").asgi(dev=True)
