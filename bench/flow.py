"""Flow control and microprocess benchmarks (issues 4 and 5).

`ordered`: the same no-op drain three ways in one run — unordered, with an ordering key over
10,000 keys, and with a keyed concurrency limit (5 per key over 100 keys) — as ratios to the
unordered drain (DESIGN §6: ordered >= 70% of unordered).

`fanout`: one parent fans out N children (1,000,000 by default), a `stepwell worker` drains
them, the parent reduces once: time to create the children, time to drain them, the parent's
end, and the worker's peak RSS (DESIGN §6: 1,000,000 children created in <= 30 s, drained,
reduce done, worker RSS <= 200 MB).
"""

from __future__ import annotations

import time

from bench.apps import make_app
from bench.common import pg_database, scratch_dir, spawn, stop, table, tree_memory
from bench.stepwell_drain import drain_with_workers
from bench.worker import command as worker_command


def _urls(quick: bool) -> list[tuple[str, object]]:
    """(label, a context manager yielding a database URL) for SQLite, and PostgreSQL unless quick."""
    import contextlib

    @contextlib.contextmanager
    def sqlite_url():  # type: ignore[no-untyped-def]
        with scratch_dir() as path:
            yield f"sqlite:///{path / 'bench.db'}"

    stores: list[tuple[str, object]] = [("sqlite", sqlite_url)]
    if not quick:
        stores.append(("postgresql", lambda: pg_database("flow")))
    return stores


def ordered(quick: bool) -> None:
    n = 2_000 if quick else 20_000
    rows = []
    for label, opener in _urls(quick):
        unordered = None
        for function, keys, about in (
            ("noop", 10_000, "unordered"),
            ("ordered", 10_000, "ordering_key, 10,000 keys"),
            ("limited", 100, "Concurrency(limit=5) per key, 100 keys"),
        ):
            with opener() as url:  # type: ignore[operator]
                result = drain_with_workers(url, n, function=function, concurrency=50, keys=keys, limit=600)
            rate = result.drain.rate
            unordered = unordered or rate
            rows.append([label, about, n, round(rate), f"{rate / unordered:.0%}", result.drain.finished])
    table(
        "Flow-control drains: the same no-op runs, one `stepwell worker --concurrency 50` (target: ordered >= 70%)",
        ["store", "function", "runs", "runs/s", "of unordered", "finished"],
        rows,
    )


def fanout(quick: bool) -> None:
    n = 2_000 if quick else 1_000_000
    rows = []
    for label, opener in _urls(quick):
        with opener() as url:  # type: ignore[operator]
            rows.append([label, *_fanout_once(url, n)])
    table(
        f"Fan-out: one parent, {n:,} children, one `stepwell worker --concurrency 50` "
        "(targets: created <= 30 s, worker RSS <= 200 MB)",
        ["store", "children", "created s", "drained s", "children/s", "parent", "worker peak RSS MB"],
        rows,
    )


def _fanout_once(url: str, n: int) -> list[object]:
    app = make_app(url)
    try:
        app.send("bench.fanout", {"n": n})
        proc = spawn(worker_command("bench.apps:app", url, concurrency=50, processes=1))
        started = time.perf_counter()
        created = drained = None
        parent = None
        try:
            deadline = started + 3600
            while time.perf_counter() < deadline and proc.poll() is None:
                time.sleep(0.25)
                parents = app.runs(function="fanout-parent", limit=1)
                if not parents:
                    continue
                parent = parents[0]
                if created is None and app.fan_out_progress(parent.id, "children").total is not None:
                    created = time.perf_counter() - started
                if parent.status.is_terminal:
                    drained = time.perf_counter() - started
                    break
            memory = tree_memory(proc.pid)
        finally:
            stop(proc)
        status = parent.status.value if parent else "missing"
        rate = round(n / drained) if drained else "-"
        return [n, _seconds(created), _seconds(drained), rate, status, round(memory.peak_mb, 1)]
    finally:
        app.close()


def _seconds(value: float | None) -> object:
    return "-" if value is None else round(value, 1)
