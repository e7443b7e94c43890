"""Crashes placed exactly with named crash points (RELIABILITY 1, 2, 6, 7), on every store.

Ingest: a client process dies right after its commit (no answer) or right before its write; the
client retries with the same event id. Workers: a worker dies after a step's side effect but
before its result is stored, right after the result is stored, right after claiming, and just
before or after settling. Every time: what was acknowledged exists once, each completed step's
code ran once, and a step whose result was not stored runs again under the same idempotency
key (`run_id` + step id).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import stepwell
from stepwell.runtime.crashpoints import EXIT_CODE
from tests.faults import ledger
from tests.faults.checkers import check
from tests.faults.faults_app import JOB
from tests.faults.history import History
from tests.faults.procs import FaultWorkers, run_client
from tests.integration.helpers import wait_until

pytestmark = pytest.mark.slow


def job_runs(client: stepwell.App) -> list[stepwell.Run]:
    return [client.get_run(run.id) for run in client.runs(function="job", limit=1000)]


@pytest.mark.parametrize("point", ["ingest.after_commit", "ingest.before_write", None])
def test_a_client_crashing_around_its_commit_retries_and_the_event_exists_once(
    point: str | None, database_url: str, ledger_path: Path, history: History, client: stepwell.App
) -> None:
    """None: the client got its answer, then died and retried anyway (a crash right after the response)."""
    code = run_client(database_url, ledger_path, history.path, ["send", JOB, "evt-1"], crash=point)
    if point is None:
        assert code == 0 and history.completed("send", "ok") == {"evt-1"}
    else:
        assert code == EXIT_CODE, "the crash point was not reached"
        assert history.invoked_without_completion("send") == {"evt-1"}  # the client never learnt the outcome
    stored = client.runs(function="job")
    assert len(stored) == (0 if point == "ingest.before_write" else 1)  # committed, or nothing at all

    assert run_client(database_url, ledger_path, history.path, ["send", JOB, "evt-1"]) == 0  # the retry
    [run] = client.runs(function="job")
    assert run.event_id == "evt-1"
    assert history.completed("send", "ok") == {"evt-1"}


@pytest.mark.parametrize(
    ("point", "runs_of_a"),
    [
        ("step.after_effect", 2),  # the effect happened, its result was not stored: it runs again
        ("step.after_commit", 1),  # stored: never again
        ("worker.after_claim", 0),  # nothing started before the crash
        ("worker.before_settle", 1),  # every step stored, the completion not: steps replay, none re-runs
        ("worker.after_settle", 1),
    ],
)
def test_a_worker_crashing_at_a_crash_point_loses_nothing_and_reruns_only_unstored_steps(
    point: str,
    runs_of_a: int,
    fault_workers: FaultWorkers,
    client: stepwell.App,
    ledger_path: Path,
    history: History,
    database_url: str,
) -> None:
    history.call("test", "send", "job-1", lambda: client.send(JOB, {}, id="job-1"))
    crashing = fault_workers.start(crash=point, lease=1.0, concurrency=1)
    assert crashing.wait_exit(timeout=20) == EXIT_CODE, crashing.output()
    fault_workers.start(lease=1.0, concurrency=1)
    wait_until(
        lambda: [r for r in client.runs(function="job") if r.status == stepwell.RunStatus.COMPLETED],
        timeout=20,
        what="the run to complete",
    )
    executions = ledger.read(ledger_path)
    starts = [(e.step, e.attempt) for e in executions if e.phase == "start"]
    first = [s for s in starts if s[1] == 1]
    if point == "worker.after_claim":
        assert first == [], "the crashed worker ran user code after it claimed"
    assert [s for s, _ in starts].count("a") == runs_of_a + (1 if point == "worker.after_claim" else 0)
    assert [s for s, _ in starts].count("b") == 1 and [s for s, _ in starts].count("c") == 1
    if point == "step.after_effect":  # both attempts of step a saw the same idempotency key
        assert {(e.run, e.step) for e in executions if e.step == "a"} == {(client.runs()[0].id, "a")}
        assert [a for s, a in starts if s == "a"] == [1, 2]

    runs = job_runs(client)
    report = check(history.ops(), executions, runs, database_url=database_url)
    assert report.problems() == [], report.summary()
