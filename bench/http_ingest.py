"""Issue 10: events in over HTTP (`http-ingest`) against `app.send` in-process, and the Cape burst.

The server is the real `stepwell server` in its own process, with API keys; the load comes from this
process over keep-alive connections. Figures are events/s and the HTTP/in-process ratio; the burst
posts 30,000 events through the batch endpoint as fast as it can (Cape: within one second) while a
`stepwell worker` drains them, and reports whether all were accepted and when 95% of their runs
had started.
"""

from __future__ import annotations

import contextlib
import math
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from bench.apps import make_app
from bench.common import PgCount, pg_database, scratch_dir, spawn, stop, table
from bench.postgres import postgres_store_ready
from bench.worker import command as worker_command

BATCH = 1000
BURST_TARGET_S = 3.0


def http_ingest(quick: bool) -> None:
    single, batched, burst = (50, 1000, 2000) if quick else (3000, 50_000, 30_000)
    rows: list[list[object]] = []
    bursts: list[list[object]] = []
    with scratch_dir() as tmp:
        stores: list[tuple[str, Callable[[str], Iterator[str]]]] = [("SQLite", lambda what: _sqlite(tmp, what))]
        if not quick and postgres_store_ready():  # --quick checks the bench runs: SQLite alone
            stores.append(("PostgreSQL", lambda what: _pg(what)))
        for label, database in stores:
            with database("ingest") as url:
                rows += _ingest_rows(label, url, single, batched, tmp)
            with database("burst") as url:
                bursts.append(_burst_row(label, url, burst, tmp))
    table(
        "HTTP ingest vs app.send in-process (one event per call, and batches of 1,000)",
        ["store", "how", "events", "in-process/s", "HTTP/s", "HTTP / in-process"],
        rows,
        note="HTTP: `stepwell server` in its own process, API key checked per request, keep-alive client.",
    )
    table(
        f"Cape burst: {burst:,} events POSTed in batches of 1,000 by 4 client threads, one `stepwell worker` draining",
        ["store", "events", "accepted", "posted in s", "95% started after s", f"<= {BURST_TARGET_S:g} s"],
        bursts,
        note="posted in: first request sent -> last 202 received; 95% started: from the first request sent to the "
        "started_at of the run at 95% in start order (read afterwards; a count polled every 250 ms says when).",
    )


@contextmanager
def _sqlite(tmp: Path, what: str) -> Iterator[str]:
    yield f"sqlite:///{tmp / f'{what}.db'}"


@contextmanager
def _pg(what: str) -> Iterator[str]:
    with pg_database(f"http_{what}") as url:
        yield url


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _server(url: str, tmp: Path) -> Iterator[tuple[str, str]]:
    """(base URL, ingest token) of a `stepwell server` process on the database."""
    app = make_app(url)
    _, token = app.create_api_key("bench", ["ingest"])
    app.close()
    port = _free_port()
    argv = [sys.executable, "-m", "stepwell", "server", "--app", "bench.apps:app", "--port", str(port),
            "--database-url", url]  # fmt: skip
    process = spawn(argv, log=tmp / "server.log")
    base = f"http://127.0.0.1:{port}/api/v1"
    try:
        for _ in range(400):
            try:
                if httpx.get(base + "/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        yield base, token
    finally:
        stop(process)


def _ingest_rows(label: str, url: str, single: int, batched: int, tmp: Path) -> list[list[object]]:
    app = make_app(url)
    begun = time.perf_counter()
    for i in range(single):
        app.send("bench.noop", {"i": i})
    local_single = single / (time.perf_counter() - begun)
    events = [{"name": "bench.noop", "data": {"i": i}} for i in range(batched)]
    begun = time.perf_counter()
    for start in range(0, batched, BATCH):
        app.send(events[start : start + BATCH])
    local_batch = batched / (time.perf_counter() - begun)
    app.close()
    with _server(url, tmp) as (base, token), httpx.Client(headers={"Authorization": f"Bearer {token}"}) as client:
        begun = time.perf_counter()
        for i in range(single):
            assert client.post(base + "/events", json={"name": "bench.noop", "data": {"i": i}}).status_code == 202
        remote_single = single / (time.perf_counter() - begun)
        begun = time.perf_counter()
        for start in range(0, batched, BATCH):
            assert client.post(base + "/events", json=events[start : start + BATCH]).status_code == 202
        remote_batch = batched / (time.perf_counter() - begun)
    return [
        [label, "one event per call", single, local_single, remote_single, f"{remote_single / local_single:.0%}"],
        [label, "batches of 1,000", batched, local_batch, remote_batch, f"{remote_batch / local_batch:.0%}"],
    ]


def _started_count(url: str) -> Callable[[], int]:
    sql = "SELECT count(*) FROM runs WHERE started_at IS NOT NULL"
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        return lambda: int(conn.execute(sql).fetchone()[0])
    return PgCount(url, sql)


def _nth_start(url: str, k: int) -> float:
    """The wall-clock time (epoch seconds) at which the k-th run started, from the runs' own
    `started_at` (SQLite: integer microseconds; PostgreSQL: the server's clock, on this machine)."""
    if url.startswith("sqlite:///"):
        sql = "SELECT started_at FROM runs WHERE started_at IS NOT NULL ORDER BY started_at LIMIT 1 OFFSET ?"
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn:
            return int(conn.execute(sql, (k - 1,)).fetchone()[0]) / 1e6
    import psycopg

    sql = (
        "SELECT extract(epoch FROM started_at) FROM runs WHERE started_at IS NOT NULL"
        " ORDER BY started_at LIMIT 1 OFFSET %s"
    )
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(sql, (k - 1,)).fetchone()  # type: ignore[arg-type]
        return float(row[0]) if row else float("nan")


def _burst_row(label: str, url: str, n: int, tmp: Path) -> list[object]:
    make_app(url).close()  # the schema, before the worker and the server start
    worker = spawn(worker_command("bench.apps:app", url, concurrency=100, processes=1), log=tmp / "worker.log")
    try:
        with _server(url, tmp) as (base, token):
            chunks = [[{"name": "bench.noop", "data": {"i": i}} for i in range(s, min(s + BATCH, n))]
                      for s in range(0, n, BATCH)]  # fmt: skip
            accepted: list[int] = []
            lock = threading.Lock()

            def post(part: list[list[dict[str, object]]]) -> None:
                with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
                    for chunk in part:
                        answer = client.post(base + "/events", json=chunk)
                        with lock:
                            accepted.append(len(answer.json()["ids"]) if answer.status_code == 202 else 0)

            threads = [threading.Thread(target=post, args=(chunks[k::4],)) for k in range(4)]
            started_count = _started_count(url)
            begun, begun_at = time.perf_counter(), time.time()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            posted = time.perf_counter() - begun
            deadline, wanted = begun + 120, math.ceil(0.95 * n)
            while started_count() < wanted and time.perf_counter() < deadline:
                time.sleep(0.25)  # a full count over the runs: rarely, not to slow the worker it measures
            reached = _nth_start(url, wanted) - begun_at if started_count() >= wanted else float("nan")
    finally:
        stop(worker)
    total = sum(accepted)
    ok = total == n and reached <= BURST_TARGET_S
    return [label, n, total, posted, reached, "yes" if ok else "no"]
