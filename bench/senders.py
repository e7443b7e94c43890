"""Issue 15, item 3: concurrent `send`s on SQLite, one event per call, from 1, 4 and 16 threads.

A web app or the HTTP server sends from several threads at once; before group commit each `send`
paid a whole transaction of its own (BEGIN IMMEDIATE ... COMMIT, the COMMIT about half of it).
Each thread calls `app.send(name, data)` in a loop on one file; the table gives sends/s, COMMITs
per send (the store's own count, `SQLiteStore.write_stats()`; without it, a tree from before
group commit, one COMMIT per write) and CPU time per send (`time.process_time`: every thread of
the process). On a shared machine the rates are noise; COMMITs per send do not depend on it and
CPU time per send is not stretched by other processes. The bare loop (one single-row insert and
COMMIT per call, one thread, same file) is the limit the issue measures `send` against.

To compare with the tree before the change: `git archive main src | tar -x -C /tmp/before`, then
`PYTHONPATH=/tmp/before/src python -m bench sqlite-senders` (bench/ is this tree's either way).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bench.apps import make_app
from bench.common import scratch_dir, table
from bench.stepwell_drain import CountingSQLiteStore
from bench.stepwell_ops import bare_loop

THREADS = (1, 4, 16)


@dataclass(frozen=True, slots=True)
class Senders:
    threads: int
    sends: int
    seconds: float
    cpu_seconds: float
    writes: int
    commits: int


def concurrent_sends(path: Path, threads: int, per_thread: int) -> Senders:
    """`threads` threads, each sending `per_thread` events one per call, started together."""
    store = CountingSQLiteStore(path)
    store.migrate()
    app = make_app()
    app.bind(store)
    try:
        app.send("bench.noop", {"i": -1})  # register the functions outside the timing
        before = _commits(store)
        store.commits.clear()
        start = threading.Barrier(threads + 1)

        def sender(n: int) -> None:
            start.wait()
            for i in range(per_thread):
                app.send("bench.noop", {"thread": n, "i": i})

        workers = [threading.Thread(target=sender, args=(n,)) for n in range(threads)]
        for worker in workers:
            worker.start()
        cpu, begun = time.process_time(), time.perf_counter()
        start.wait()
        for worker in workers:
            worker.join()
        seconds, cpu_seconds = time.perf_counter() - begun, time.process_time() - cpu
        writes = sum(store.commits.values())
        commits = writes if before is None else _commits(store) - before  # type: ignore[operator]
        return Senders(threads, threads * per_thread, seconds, cpu_seconds, writes, commits)
    finally:
        app.close()


def _commits(store: CountingSQLiteStore) -> int | None:
    """COMMITs so far, when the store counts them (group commit); None for a tree from before it."""
    stats = getattr(store, "write_stats", None)
    return None if stats is None else int(stats().commits)


def sqlite_senders(quick: bool) -> None:
    total = 400 if quick else 8_000
    rows = []
    with scratch_dir() as tmp:
        bare = bare_loop(f"sqlite:///{tmp / 'bare.db'}")
        bare(10)
        bare_us = bare(total // 4) / (total // 4) * 1e6
        for threads in THREADS:
            result = concurrent_sends(tmp / f"senders-{threads}.db", threads, total // threads)
            rate = result.sends / result.seconds
            rows.append([
                threads, result.sends, rate, f"{rate * bare_us / 1e6:.0%}", result.commits / result.sends,
                result.cpu_seconds / result.sends * 1e6, result.seconds / result.sends * 1e6,
            ])  # fmt: skip
    table(
        "SQLite concurrent send: each thread calls app.send(name, data) in a loop, one file",
        ["threads", "sends", "sends/s", "of bare loop", "commits/send", "CPU us/send", "wall us/send"],
        rows,
        note=f"bare loop (one thread, one single-row insert+commit per call): {bare_us:.0f} us/call "
        f"({1e6 / bare_us:,.0f}/s); target: send >= 80% of it. CPU: the whole process, every thread.",
    )
