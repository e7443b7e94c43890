"""LISTEN/NOTIFY wake-ups on PostgreSQL: fast starts across processes, and no reliance on them.

Jobs are sent from a second App on the same database, so the worker's in-process wake-ups never
fire: only a NOTIFY (or the poll) can start them.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import stepwell
from stepwell.runtime.worker import WorkerOptions
from tests.conftest import database_url_for
from tests.pg_helpers import WorkerThread, listener_pids, schema_of, terminate, wait_until

pytestmark = pytest.mark.postgres

FAST = 2.0  # seconds: far below the 30 s poll, far above a NOTIFY's few milliseconds


@pytest.fixture
def pg_url(tmp_path: Path) -> str:
    return database_url_for("postgres", tmp_path)


def _app(url: str, started: queue.Queue[tuple[int, float]] | None = None) -> stepwell.App:
    app = stepwell.App("notify", database_url=url)

    @app.function("record-start", trigger=stepwell.on_event("job.sent"))
    def record_start(ctx: Any) -> None:
        if started is not None:
            started.put((ctx.event.data["n"], time.monotonic()))

    return app


@pytest.fixture
def started() -> queue.Queue[tuple[int, float]]:
    return queue.Queue()


@pytest.fixture
def worker_app(pg_url: str, started: queue.Queue[tuple[int, float]]) -> Iterator[stepwell.App]:
    app = _app(pg_url, started)
    yield app
    app.close()


@pytest.fixture
def sender(pg_url: str, worker_app: stepwell.App) -> Iterator[stepwell.App]:
    worker_app.store.migrate()
    app = _app(pg_url)
    yield app
    app.close()


def _latency(sender: stepwell.App, started: queue.Queue[tuple[int, float]], n: int, timeout: float = 10) -> float:
    sent_at = time.monotonic()
    sender.send("job.sent", {"n": n})
    got, at = started.get(timeout=timeout)
    assert got == n
    return at - sent_at


def test_a_job_sent_by_another_app_starts_at_once_through_notify(
    worker_app: stepwell.App, sender: stepwell.App, started: queue.Queue[tuple[int, float]], pg_url: str
) -> None:
    schema = schema_of(pg_url)
    with WorkerThread(worker_app, WorkerOptions(poll_interval=30)):
        wait_until(lambda: len(listener_pids(schema)) == 1, 10, "the LISTEN connection")
        time.sleep(0.2)  # the worker's first scan is over: it now sleeps for the 30 s poll
        for n in range(3):
            assert _latency(sender, started, n) < FAST


def test_the_listener_comes_back_after_its_connection_is_killed(
    worker_app: stepwell.App, sender: stepwell.App, started: queue.Queue[tuple[int, float]], pg_url: str
) -> None:
    schema = schema_of(pg_url)
    with WorkerThread(worker_app, WorkerOptions(poll_interval=30)):
        wait_until(lambda: len(listener_pids(schema)) == 1, 10, "the LISTEN connection")
        [first] = listener_pids(schema)
        time.sleep(0.2)
        assert _latency(sender, started, 1) < FAST
        terminate([first])
        # Sent while the listener is down: found by the scan the listener asks for after it reconnects.
        assert _latency(sender, started, 2) < FAST + 3
        wait_until(lambda: listener_pids(schema) not in ([], [first]), 10, "a new LISTEN connection")
        time.sleep(0.2)
        assert _latency(sender, started, 3) < FAST


def test_jobs_start_within_the_poll_interval_while_the_listener_keeps_dying(
    worker_app: stepwell.App, sender: stepwell.App, started: queue.Queue[tuple[int, float]], pg_url: str
) -> None:
    schema = schema_of(pg_url)
    poll = 0.5
    stop = threading.Event()

    def kill_listeners() -> None:
        while not stop.is_set():
            terminate(listener_pids(schema))
            stop.wait(0.005)

    killer = threading.Thread(target=kill_listeners, daemon=True)
    with WorkerThread(worker_app, WorkerOptions(poll_interval=poll)):
        wait_until(lambda: len(listener_pids(schema)) == 1, 10, "the LISTEN connection")
        killer.start()
        try:
            for n in range(5):
                assert _latency(sender, started, n) < poll + 1.5
                time.sleep(0.1)
        finally:
            stop.set()
            killer.join()
        wait_until(lambda: len(listener_pids(schema)) == 1, 15, "the LISTEN connection to come back")
        time.sleep(0.2)
        assert _latency(sender, started, 99) < FAST


def test_with_listen_off_the_worker_polls_and_holds_no_listen_connection(
    pg_url: str, started: queue.Queue[tuple[int, float]]
) -> None:
    url = pg_url + "&stepwell_listen=off"
    worker_app, sender = _app(url, started), _app(url)
    try:
        assert worker_app.store.subscribe(lambda: None) is None
        with WorkerThread(worker_app, WorkerOptions(poll_interval=0.3)):
            time.sleep(0.5)
            assert listener_pids(schema_of(pg_url)) == []
            for n in range(3):
                assert _latency(sender, started, n) < 0.3 + 1.5
    finally:
        worker_app.close()
        sender.close()


def test_a_transactional_enqueue_wakes_the_worker_at_commit(
    worker_app: stepwell.App, sender: stepwell.App, started: queue.Queue[tuple[int, float]], pg_url: str
) -> None:
    schema = schema_of(pg_url)
    with WorkerThread(worker_app, WorkerOptions(poll_interval=30)):
        wait_until(lambda: len(listener_pids(schema)) == 1, 10, "the LISTEN connection")
        time.sleep(0.2)
        with psycopg.connect(pg_url) as conn:
            sender.send("job.sent", {"n": 7}, connection=conn)
            time.sleep(0.3)
            assert started.empty()  # not committed: invisible, and no NOTIFY delivered yet
            committed_at = time.monotonic()
        got, at = started.get(timeout=10)
        assert got == 7 and at - committed_at < FAST


def test_resuming_a_function_from_another_app_wakes_the_worker_through_notify(
    worker_app: stepwell.App, sender: stepwell.App, started: queue.Queue[tuple[int, float]], pg_url: str
) -> None:
    schema = schema_of(pg_url)
    with WorkerThread(worker_app, WorkerOptions(poll_interval=30)):
        wait_until(lambda: len(listener_pids(schema)) == 1, 10, "the LISTEN connection")
        time.sleep(0.2)
        sender.pause_function("record-start")
        sender.send("job.sent", {"n": 5})
        time.sleep(0.5)  # the send's NOTIFY woke the worker: it found the run paused
        assert started.empty()
        resumed_at = time.monotonic()
        sender.resume_function("record-start")
        got, at = started.get(timeout=10)
        assert got == 5 and at - resumed_at < FAST, "the resume's NOTIFY, not the 30 s poll"
