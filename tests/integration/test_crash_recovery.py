"""RELIABILITY 6: a worker SIGKILLed in the middle of step 2 of 3."""

from __future__ import annotations

import time

import pytest

import stepwell
from tests.integration.helpers import Effects, WorkerProcess, Workers

pytestmark = pytest.mark.slow

LEASE = 2.0
RESCUE_INTERVAL = 0.5
POLL_INTERVAL = 0.1
SLACK = 1.0  # process start-up of the second worker, a claim round trip, a loaded machine


def test_sigkill_mid_step_reruns_only_the_interrupted_step(
    workers: Workers, effects: Effects, client: stepwell.App
) -> None:
    def start() -> WorkerProcess:
        return workers.start(lease=LEASE, rescue_interval=RESCUE_INTERVAL, poll_interval=POLL_INTERVAL)

    run_id = client.enqueue("three-steps", {"hold": {"step-2": 1.0}})
    first = start()
    effects.wait_for(run_id, "step-2", pid=first.pid)  # step 2 has started and holds for a second

    first.kill()
    killed_at = time.time()
    second = start()

    run = client.wait(run_id, timeout=LEASE + RESCUE_INTERVAL + 10)
    assert run.status == stepwell.RunStatus.COMPLETED, run.error
    assert [(e.label, e.pid, e.attempt) for e in effects.of(run_id)] == [
        ("step-1", first.pid, 1),
        ("step-2", first.pid, 1),  # interrupted by the kill, never committed
        ("step-2", second.pid, 2),  # so executed again: at least once, at most twice
        ("step-3", second.pid, 2),
        ("tail", second.pid, 2),
    ]
    assert run.step("step-1").output == {"pid": first.pid, "attempt": 1}  # memoized, not re-run
    assert run.step("step-2").output == {"pid": second.pid, "attempt": 2}
    assert run.output == {"pid": second.pid, "attempt": 2}
    assert run.attempt == 2
    assert [e.type for e in run.errors] == ["LeaseExpired"]

    reclaimed_after = effects.of(run_id, "step-2", pid=second.pid)[0].at - killed_at
    # not before the lease could have run out (the last heartbeat was at most LEASE/3 before the kill) ...
    assert reclaimed_after >= LEASE * 2 / 3 - 0.1
    # ... and not much after: expiry, then the next rescue pass, then the next poll
    assert reclaimed_after <= LEASE + RESCUE_INTERVAL + POLL_INTERVAL + SLACK


@pytest.mark.parametrize(
    ("crash", "effect_runs"),
    [
        ("inside-step", 2),  # after the step's side effect, before its result is stored: the step runs again
        ("after-commit", 1),  # right after its result is stored: the step never runs again
    ],
)
def test_sigkill_around_a_step_commit(
    workers: Workers, effects: Effects, client: stepwell.App, crash: str, effect_runs: int
) -> None:
    """RELIABILITY 7."""

    def start() -> WorkerProcess:
        return workers.start(lease=1.0, rescue_interval=0.2, poll_interval=0.05)

    run_id = client.enqueue("crash-once", {"crash": crash})
    first = start()
    assert first.wait_exit(timeout=10) == -9  # the run killed it
    second = start()

    run = client.wait(run_id, timeout=10)
    assert run.status == stepwell.RunStatus.COMPLETED, run.error
    executions = effects.of(run_id, "effect")
    assert [e.pid for e in executions] == [first.pid, second.pid][:effect_runs]
    # every execution sees the same idempotency key for its side effect: run id + step id
    assert {(e.run_id, e.label) for e in executions} == {(run_id, "effect")}
    assert [(e.pid, e.attempt) for e in effects.of(run_id, "after")] == [(second.pid, 2)]
    assert run.step("effect").output == {"pid": executions[-1].pid, "attempt": executions[-1].attempt}
