"""The Stepwell app the benchmarks run: `stepwell worker bench.apps:app --database-url ...`.

`app` has no database URL of its own: the worker gets it from `--database-url`; the bench
process, which sends the events, calls `make_app(url)` for an app with the same functions.
"""

from __future__ import annotations

import os
import time
from typing import Any

import stepwell


def noop(ctx: stepwell.Context) -> None:
    return None


async def noop_async(ctx: stepwell.Context) -> None:
    return None


_latency_file: Any = None


def _record_start(seq: int) -> None:
    """Append `seq start-time` to $STEPWELL_BENCH_LATENCY_FILE (O_APPEND: whole lines from many processes)."""
    global _latency_file
    if _latency_file is None:
        _latency_file = open(os.environ["STEPWELL_BENCH_LATENCY_FILE"], "a", buffering=1)  # noqa: SIM115
    _latency_file.write(f"{seq} {time.time():.6f}\n")


def latency(ctx: stepwell.Context) -> None:
    ctx.step.run("first", _record_start, ctx.event.data["seq"])


def fanout_child(ctx: stepwell.Context) -> int:
    return int(ctx.event.data)


def fanout_parent(ctx: stepwell.Context) -> dict[str, int]:
    children = ctx.step.fan_out("children", "fanout-child", range(int(ctx.event.data["n"])))
    return {"completed": children.completed, "failed": children.failed}


def make_app(database_url: str | None = None) -> stepwell.App:
    bench = stepwell.App("bench", database_url=database_url)
    bench.function("ordered", trigger=stepwell.on_event("bench.ordered"), retries=0, ordering_key="event.data.key")(
        noop
    )
    bench.function(
        "limited",
        trigger=stepwell.on_event("bench.limited"),
        retries=0,
        concurrency=stepwell.Concurrency(limit=5, key="event.data.key"),
    )(noop)
    bench.function("fanout-child", retries=0)(fanout_child)
    bench.function("fanout-parent", trigger=stepwell.on_event("bench.fanout"), retries=0)(fanout_parent)
    bench.function("noop", trigger=stepwell.on_event("bench.noop"), retries=0)(noop)
    bench.function("noop-async", trigger=stepwell.on_event("bench.noop-async"), retries=0)(noop_async)
    bench.function("latency", trigger=stepwell.on_event("bench.latency"), retries=0)(latency)
    return bench


app = make_app()
