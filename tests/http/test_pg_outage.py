"""RELIABILITY 3 through HTTP, on a throwaway cluster (never the shared server): PostgreSQL stopped
while a client keeps posting events. Every answer is 202 (with its row) or 503 with Retry-After and
a clear error, never a 500 or a hang; the server stays up and recovers by itself when PostgreSQL is
back; nothing acknowledged is lost. And PostgreSQL frozen (SIGSTOP: what a partition that drops
packets looks like from here): 504 after `Limits.store_timeout`, never a hang."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

import stepwell
from stepwell.http import Limits, ServerThread
from tests.http.conftest import make_app
from tests.pg_cluster import ThrowawayCluster, pg_cluster

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
__all__ = ["pg_cluster"]  # the module-scoped fixture, imported for pytest

DOWN = float(os.environ.get("STEPWELL_PG_DOWN_SECONDS") or 6)  # 20 in the catalogue's long version
ANSWER_WITHIN = 30.0  # seconds: far over the pool timeout (5 s); a hang would reach it


@pytest.fixture
def database_url(pg_cluster: ThrowawayCluster) -> str:
    """The throwaway cluster whatever STEPWELL_TEST_BACKENDS says: stopping it is the point."""
    return pg_cluster.schema_url()


class Sender:
    """Posts events with distinct ids, one after another, and records every answer."""

    def __init__(self, url: str, token: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=ANSWER_WITHIN, headers={"Authorization": f"Bearer {token}"})
        self.acknowledged: list[str] = []
        self.answers: Counter[tuple[int, str]] = Counter()
        self.bad: list[str] = []  # answers that break the promise
        self.stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="outage-sender", daemon=True)

    def __enter__(self) -> Sender:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._thread.join(timeout=ANSWER_WITHIN + 5)
        self.http.close()

    def _run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            self._send(f"outage-{n}", n)

    def _send(self, event_id: str, n: int) -> None:
        started = time.monotonic()
        try:
            answer = self.http.post("/api/v1/events", json={"name": "user.created", "id": event_id, "data": {"n": n}})
        except httpx.TimeoutException:
            self.bad.append(f"{event_id}: no answer within {ANSWER_WITHIN} s")
            return
        code = answer.json().get("code", "") if answer.status_code != 202 else ""
        self.answers[(answer.status_code, code)] += 1
        if answer.status_code == 202:
            self.acknowledged.append(event_id)
        elif answer.status_code != 503 or code != "store_unavailable" or answer.headers.get("Retry-After") != "1":
            self.bad.append(f"{event_id}: {answer.status_code} {answer.text[:300]} after {time.monotonic() - started}")
        elif "database is unavailable" not in answer.json()["message"]:
            self.bad.append(f"{event_id}: unclear 503 {answer.text[:300]}")
        else:
            time.sleep(0.05)  # as a client honouring Retry-After would, only shorter


@pytest.fixture
def served(database_url: str) -> Iterator[tuple[stepwell.App, ServerThread, dict[str, str]]]:
    app = make_app(database_url)
    tokens = {scope: app.create_api_key(f"outage {scope}", [scope])[1] for scope in ("ingest", "read")}
    with ServerThread(app, host="127.0.0.1", port=0) as server:
        yield app, server, tokens
    app.close()


def _wait(check: object, what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_postgresql_down_answers_503_with_retry_after_and_recovers_by_itself(
    pg_cluster: ThrowawayCluster, served: tuple[stepwell.App, ServerThread, dict[str, str]], database_url: str
) -> None:
    _app, server, tokens = served
    reader = httpx.Client(base_url=server.url, timeout=ANSWER_WITHIN)
    read = {"Authorization": f"Bearer {tokens['read']}"}
    with Sender(server.url, tokens["ingest"]) as sender:
        _wait(lambda: len(sender.acknowledged) >= 20, "the first events")
        pg_cluster.stop("fast")
        try:
            _wait(lambda: sender.answers[(503, "store_unavailable")] >= 2, "503s while PostgreSQL is down", 60)
            ready = reader.get("/api/v1/ready")
            assert (ready.status_code, ready.headers["Retry-After"]) == (503, "1")
            runs = reader.get("/api/v1/runs", headers=read)  # the key check itself needs the database
            assert (runs.status_code, runs.json()["code"], runs.headers["Retry-After"]) == (
                503, "store_unavailable", "1",
            )  # fmt: skip
            assert reader.get("/api/v1/health").status_code == 200, "the process stays up"
            time.sleep(max(DOWN - 2, 0))
        finally:
            pg_cluster.start()
        during = sum(sender.answers.values())
        _wait(lambda: sender.answers[(202, "")] > 0 and reader.get("/api/v1/ready").status_code == 200, "recovery")
        recovered_at = len(sender.acknowledged)
        _wait(lambda: len(sender.acknowledged) >= recovered_at + 20, "events after recovery")
    print("answers:", dict(sender.answers), "acknowledged:", len(sender.acknowledged))
    assert sender.bad == [], sender.bad[:5]
    assert during > 0 and set(sender.answers) <= {(202, ""), (503, "store_unavailable")}, sender.answers
    assert reader.get("/api/v1/runs", headers=read).status_code == 200
    reader.close()
    check = stepwell.App("outage-check", database_url=database_url)
    try:
        stored = {event_id for event_id in sender.acknowledged if check.store.get_event(event_id) is not None}
    finally:
        check.close()
    assert stored == set(sender.acknowledged), f"acknowledged but lost: {sorted(set(sender.acknowledged) - stored)}"


def _cluster_processes(cluster: ThrowawayCluster) -> list[int]:
    """The postmaster (its command line names the data folder) and its children."""
    found = subprocess.run(["pgrep", "-f", "--", f"-D {cluster.data}"], capture_output=True, text=True).stdout.split()
    postmasters = [int(pid) for pid in found]
    assert postmasters, "the cluster's postmaster was not found"
    children = subprocess.run(["pgrep", "-P", str(postmasters[0])], capture_output=True, text=True).stdout.split()
    return [*postmasters, *(int(pid) for pid in children)]


def test_postgresql_frozen_answers_504_within_the_store_timeout_and_recovers(
    pg_cluster: ThrowawayCluster, database_url: str
) -> None:
    app = make_app(database_url)
    limits = Limits(store_timeout=2.0)
    try:
        with ServerThread(app, host="127.0.0.1", port=0, auth=False, limits=limits) as server:
            http = httpx.Client(base_url=server.url, timeout=ANSWER_WITHIN)
            assert http.post("/api/v1/events", json={"name": "user.created", "id": "before"}).status_code == 202
            frozen = _cluster_processes(pg_cluster)
            for pid in frozen:
                os.kill(pid, signal.SIGSTOP)
            try:
                started = time.monotonic()
                sent = http.post("/api/v1/events", json={"name": "user.created", "id": "frozen"})
                took = time.monotonic() - started
                ready = http.get("/api/v1/ready")
                health = http.get("/api/v1/health")
            finally:
                for pid in frozen:
                    os.kill(pid, signal.SIGCONT)
            assert (sent.status_code, sent.json()["code"], sent.headers["Retry-After"]) == (504, "store_timeout", "1")
            assert "may or may not" in sent.json()["message"] and took < ANSWER_WITHIN
            assert (ready.status_code, health.status_code) == (504, 200)
            _wait(lambda: http.post("/api/v1/events", json={"name": "user.created", "id": "frozen"}).status_code == 202,
                  "recovery")  # fmt: skip
            assert app.store.get_event("frozen") is not None and app.store.get_event("before") is not None
            http.close()
    finally:
        app.close()
