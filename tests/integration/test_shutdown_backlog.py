"""RELIABILITY 13b: SIGTERM while thousands of completions wait to be saved.

A real worker process (async, high concurrency, large prefetch and claim batch) drains no-op
runs; the test then blocks the saving of outcomes (PostgreSQL: it locks the leased rows, so
settles wait while claims go on; SQLite: it holds the write lock) and sends SIGTERM. Saving
cannot finish within the (tiny) shutdown timeout: the worker must give up on it cleanly, release
every lease it holds once the database answers again, and exit 0 without a traceback. After that
every run is completed or claimable at once: none is left running under the dead worker's lease.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from tests.integration.backlog_app import NOOP_EVENT, build_app
from tests.integration.helpers import WorkerProcess, wait_until

pytestmark = pytest.mark.slow

RUNS = 4000
SHUTDOWN_TIMEOUT = 0.2
WORKER_FLAGS = [
    "--concurrency=200",
    "--prefetch=2000",
    "--claim-batch=2000",
    "--lease=60",  # far longer than the test: only a release can make a run claimable at once
    "--poll-interval=0.05",
    f"--shutdown-timeout={SHUTDOWN_TIMEOUT}",
]


def _count(database_url: str) -> Callable[[str], int]:
    """`count(where)` over runs, from a connection of the test's own (reads pass any write lock)."""
    if database_url.startswith("sqlite:///"):
        conn = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None, timeout=30)
        return lambda where: int(conn.execute(f"SELECT count(*) FROM runs WHERE {where}").fetchone()[0])
    pg = psycopg.connect(database_url, autocommit=True)
    return lambda where: int(pg.execute(f"SELECT count(*) FROM runs WHERE {where}").fetchone()[0])  # type: ignore[index]


@contextmanager
def _saving_blocked(database_url: str) -> Iterator[None]:
    """Until the block exits, no outcome of the runs leased now can be saved."""
    if database_url.startswith("sqlite:///"):
        conn = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None, timeout=30)
        conn.execute("BEGIN IMMEDIATE")  # the write lock: every write of the worker waits (busy_timeout)
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    with psycopg.connect(database_url) as pg:  # a transaction held open: the leased rows stay locked
        pg.execute("SELECT id FROM runs WHERE status = 'running' FOR SHARE")
        yield
        pg.rollback()


def _start_worker(database_url: str, log: Path) -> WorkerProcess:
    argv = [sys.executable, "-m", "stepwell", "worker", "backlog_app:app", "--database-url", database_url]
    env = {**os.environ, "COLUMNS": "1000"}
    env.pop("STEPWELL_DATABASE_URL", None)
    with log.open("wb") as sink:
        popen = subprocess.Popen(
            [*argv, *WORKER_FLAGS], cwd=Path(__file__).parent, env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    worker = WorkerProcess(popen, log, "backlog")
    worker.wait_ready()
    return worker


def test_sigterm_with_thousands_of_unsaved_completions_exits_cleanly_and_releases(
    database_url: str, tmp_path: Path
) -> None:
    client = build_app(database_url)
    for start in range(0, RUNS, 1000):
        client.send([{"name": NOOP_EVENT, "data": {"i": i}} for i in range(start, start + 1000)])
    count = _count(database_url)
    worker = _start_worker(database_url, tmp_path / "worker.log")
    try:
        wait_until(lambda: count("status = 'running'") >= 1000, timeout=30, what="a large claim", interval=0.001)
        with _saving_blocked(database_url):
            time.sleep(0.5)  # bodies finish at once; their outcomes cannot be saved
            worker.signal(signal.SIGTERM)
            time.sleep(SHUTDOWN_TIMEOUT + 1.0 + 0.5)  # saving gets at least 1 s, then gives up; the release waits
        code = worker.wait_exit(timeout=15)
        log = worker.output()
    finally:
        if worker.alive():
            worker.kill()

    assert code == 0, log
    started = "(concurrency 200, prefetch 2000, claim batch 2000, linger 0.002s, poll 0.05s, lease 60s)"
    assert started in " ".join(log.split()), log  # every flag reached the worker (the log may wrap)
    assert "Traceback" not in log, log
    saving = re.search(r"saving (\d+) outcome\(s\) before stopping", log)
    assert saving and int(saving.group(1)) >= 500, f"not a large backlog of unsaved completions:\n{log}"
    assert "shutdown timeout" in log, log  # saving gave up, as it had to
    assert re.search(r"released \d+ lease\(s\)", log), log

    assert count("status = 'running'") == 0, "a run was left running under the stopped worker's lease"
    completed, queued = count("status = 'completed'"), count("status = 'queued'")
    assert completed + queued == RUNS
    assert queued > 0  # what was not saved was released, not lost
    claimable = client.store.claim_runs(worker_id="next", limit=RUNS, lease=timedelta(seconds=30))
    assert len(claimable) == queued  # claimable at once, not after the 60 s lease
    client.close()
