"""RELIABILITY 15: a poison job that SIGKILLs its own worker on every attempt."""

from __future__ import annotations

import time

import pytest

import stepwell
from stepwell.model.records import FailureReason
from tests.integration.helpers import Effects, WorkerProcess, Workers

pytestmark = pytest.mark.slow

ATTEMPTS = 3  # the poison function has retries=2


def test_poison_job_is_dead_lettered_as_lease_lost_after_its_attempts(
    workers: Workers, effects: Effects, client: stepwell.App
) -> None:
    poison = client.enqueue("poison")
    others = [client.enqueue("quick", {"n": n}) for n in range(5)]
    deaths: list[int] = []

    def start(ready: bool = True) -> WorkerProcess:  # one run at a time: the poison takes nothing else down
        return workers.start(lease=1.0, rescue_interval=0.2, poll_interval=0.05, concurrency=1, ready=ready)

    def supervise(worker: WorkerProcess) -> WorkerProcess:
        """Restart the worker whenever it dies, as a process supervisor would."""
        if worker.alive():
            return worker
        deaths.append(worker.popen.returncode)
        return start(ready=False)

    def settled() -> bool:
        dead = [d.run_id for d in client.dead_letters()]
        return dead == [poison] and all(client.get_run(r).status.is_terminal for r in others)

    worker = start()
    deadline = time.monotonic() + 25
    while not settled():
        assert time.monotonic() < deadline, f"not settled; deaths so far {deaths}"
        worker = supervise(worker)
        time.sleep(0.02)
    worker = supervise(worker)
    worker.wait_ready()
    time.sleep(1.5)  # past a lease and several rescue passes: room for an attempt too many
    assert worker.alive()

    assert deaths == [-9] * ATTEMPTS
    assert [(e.attempt, e.label) for e in effects.of(poison)] == [(n, "poison") for n in range(1, ATTEMPTS + 1)]
    assert len({e.pid for e in effects.of(poison)}) == ATTEMPTS  # a different worker each time
    [letter] = client.dead_letters()
    assert (letter.run_id, letter.reason, letter.attempts) == (poison, FailureReason.LEASE_LOST, ATTEMPTS)
    assert letter.error.type == "LeaseExpired"
    run = client.get_run(poison)
    assert (run.status, run.attempt) == (stepwell.RunStatus.FAILED, ATTEMPTS)
    assert [e.type for e in run.errors] == ["LeaseExpired"] * ATTEMPTS
    for run_id in others:
        other = client.get_run(run_id)
        assert other.status == stepwell.RunStatus.COMPLETED, other.error
        assert len(effects.of(run_id)) == 1
