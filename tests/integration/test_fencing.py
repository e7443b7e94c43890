"""RELIABILITY 12: a worker whose lease expired while it still worked cannot commit anything.

Worker A is frozen (SIGSTOP, so its heartbeat stops too) past its lease, worker B takes the runs
over, and A is thawed (SIGCONT) while B is still in the middle of them: A's step write and A's
completion must both be refused by the fencing token, and A must carry on working.
"""

from __future__ import annotations

import signal
from datetime import timedelta

import pytest

import stepwell
from stepwell.store.base import Lease
from tests.integration.helpers import Effects, Workers

pytestmark = pytest.mark.slow

LEASE = 2.0
HOLD = 1.0  # shorter than A stays frozen (at least 2/3 of the lease), long enough for A to write in B's time


def test_a_worker_that_lost_its_lease_cannot_commit_a_step_or_a_completion(
    workers: Workers, effects: Effects, client: stepwell.App
) -> None:
    in_step = client.enqueue("three-steps", {"hold": {"step-2": HOLD}})  # A is frozen inside step 2
    in_tail = client.enqueue("three-steps", {"hold": {"tail": HOLD}})  # A is frozen after its last step
    a = workers.start(lease=LEASE, rescue_interval=0.5, concurrency=2)
    effects.wait_for(in_step, "step-2", pid=a.pid)
    effects.wait_for(in_tail, "tail", pid=a.pid)

    def probe() -> None:  # a write on the same rows that changes nothing: it waits while A holds a lock
        now = client.store.now()
        client.store.extend_leases(
            [Lease(in_step, "probe", now), Lease(in_tail, "probe", now)], lease=timedelta(seconds=1)
        )

    a.freeze(probe)
    b = workers.start(lease=LEASE, rescue_interval=0.5, concurrency=2)
    effects.wait_for(in_step, "step-2", pid=b.pid)  # B re-runs step 2 and holds in it ...
    effects.wait_for(in_tail, "tail", pid=b.pid)  # ... and its tail, both under B's lease
    a.signal(signal.SIGCONT)  # A's held steps are long over: A writes at once, while B still holds

    done = {run_id: client.wait(run_id, timeout=15) for run_id in (in_step, in_tail)}
    # A's step 2 result was refused, so A never went on to step 3: every later effect is B's
    assert [(e.label, e.pid) for e in effects.of(in_step)] == [
        ("step-1", a.pid),
        ("step-2", a.pid),
        ("step-2", b.pid),
        ("step-3", b.pid),
        ("tail", b.pid),
    ]
    assert done[in_step].step("step-2").output == {"pid": b.pid, "attempt": 2}
    # A ran its tail to the end (its side effect happened) but its completion was refused
    assert [(e.label, e.pid) for e in effects.of(in_tail)] == [
        ("step-1", a.pid),
        ("step-2", a.pid),
        ("step-3", a.pid),
        ("tail", a.pid),
        ("tail", b.pid),
    ]
    for run in done.values():
        assert run.status == stepwell.RunStatus.COMPLETED, run.error
        assert run.output == {"pid": b.pid, "attempt": 2}  # exactly one completion: B's
        assert [e.type for e in run.errors] == ["LeaseExpired"]

    # A survives the refusals and keeps working: with B gone, it alone runs the next job
    b.signal(signal.SIGTERM)
    assert b.wait_exit(timeout=15) == 0
    probe_run = client.enqueue("quick")
    assert client.wait(probe_run, timeout=10).output == {"pid": a.pid, "attempt": 1}
    assert a.alive()
    assert "Traceback" not in a.output()
    # and A's late completion of the tail run (settled before A claimed that job) still changed nothing
    assert client.get_run(in_tail).output == {"pid": b.pid, "attempt": 2}


def test_a_worker_that_lost_its_lease_stops_even_when_user_code_catches_exceptions(
    workers: Workers, effects: Effects, client: stepwell.App
) -> None:
    """RELIABILITY lesson: "a worker that finds its lease gone stops and commits nothing" - even when
    the function wraps its steps in `except Exception` (STYLE: internal signals must not be swallowed)."""
    run_id = client.enqueue("swallows", {"hold": {"step-1": 30}})
    a = workers.start(lease=LEASE, rescue_interval=0.5)
    effects.wait_for(run_id, "step-1", pid=a.pid)

    def probe() -> None:
        client.store.extend_leases([Lease(run_id, "probe", client.store.now())], lease=timedelta(seconds=1))

    a.freeze(probe)
    b = workers.start(lease=LEASE, rescue_interval=0.5)
    effects.wait_for(run_id, "step-1", pid=b.pid)
    effects.open_gate(run_id)  # B's step 1 ends; A's would too, but A is frozen
    assert client.wait(run_id, timeout=10).output == {"pid": b.pid, "attempt": 2}
    b.signal(signal.SIGTERM)
    assert b.wait_exit(timeout=15) == 0

    a.signal(signal.SIGCONT)  # A's step 1 ends at once and its result is refused: A must stop there
    probe_run = client.enqueue("quick")
    assert client.wait(probe_run, timeout=10).output == {"pid": a.pid, "attempt": 1}  # A is past that run
    assert [(e.label, e.pid) for e in effects.of(run_id)] == [
        ("step-1", a.pid),
        ("step-1", b.pid),
        ("step-2", b.pid),
        ("step-3", b.pid),
    ]
    assert client.get_run(run_id).output == {"pid": b.pid, "attempt": 2}
