"""RELIABILITY 13a: a worker paused past its lease runs no user code of what another worker completed.

Both ways found by an operator's run of real workers: a run claimed ahead into the paused worker's
local buffer, and a run paused between two steps. The paused worker (A) is frozen with SIGSTOP,
so its heartbeat stops too; B takes the runs over and completes them; A is thawed afterwards.
Without the local lease deadline, A starts the buffered run, or calls the next step's function,
and learns only at the write that the lease is gone: the side effect has happened twice.
"""

from __future__ import annotations

import signal
from datetime import timedelta

import pytest

import stepwell
from stepwell.store.base import Lease
from tests.integration.helpers import Effects, WorkerProcess, Workers, wait_until

pytestmark = pytest.mark.slow

LEASE = 2.0


def freeze(worker: WorkerProcess, client: stepwell.App, run_ids: list[str]) -> None:
    def probe() -> None:  # a write on the same rows that changes nothing: it waits while A holds a lock
        now = client.store.now()
        client.store.extend_leases([Lease(r, "probe", now) for r in run_ids], lease=timedelta(seconds=1))

    worker.freeze(probe)


def finish_with(a: WorkerProcess, b: WorkerProcess, client: stepwell.App) -> None:
    """Stop B, thaw A, and wait until A has run a new job: A is past everything it held."""
    b.signal(signal.SIGTERM)
    assert b.wait_exit(timeout=15) == 0
    a.signal(signal.SIGCONT)
    probe_run = client.enqueue("quick")
    # A runs it: attempt 1, or 2 when a claim A had in flight when it was frozen took the probe on
    # thawing (its lease deadline counts from before the freeze, so A drops it unstarted and runs it
    # once rescued)
    output = client.wait(probe_run, timeout=15).output
    assert output["pid"] == a.pid and output["attempt"] in (1, 2), output
    assert a.alive()
    assert "Traceback" not in a.output()


def test_a_paused_worker_does_not_call_the_next_step_of_a_run_another_worker_completed(
    workers: Workers, effects: Effects, client: stepwell.App
) -> None:
    run_id = client.enqueue("between-steps", {"hold": {"between": 30}})
    a = workers.start(lease=LEASE, rescue_interval=0.5)
    effects.wait_for(run_id, "between", pid=a.pid)  # step 1 is stored; A is between steps 1 and 2
    freeze(a, client, [run_id])
    b = workers.start(lease=LEASE, rescue_interval=0.5)
    effects.wait_for(run_id, "between", pid=b.pid, timeout=15)
    effects.open_gate(run_id)  # B goes on to step 2 and completes; A, when thawed, would too
    assert client.wait(run_id, timeout=15).output == {"pid": b.pid, "attempt": 2}

    finish_with(a, b, client)
    assert [(e.label, e.pid) for e in effects.of(run_id)] == [
        ("step-1", a.pid),
        ("between", a.pid),
        ("between", b.pid),
        ("step-2", b.pid),  # and never A's: its deadline had passed when it came to call step 2
    ]
    assert client.get_run(run_id).output == {"pid": b.pid, "attempt": 2}


def test_a_paused_worker_does_not_start_a_buffered_run_another_worker_completed(
    workers: Workers, effects: Effects, client: stepwell.App
) -> None:
    runs = [client.enqueue("three-steps", {"hold": {"step-1": 30}}) for _ in range(2)]
    a = workers.start(lease=LEASE, rescue_interval=0.5, concurrency=1)  # claims both: one runs, one waits
    started = wait_until(
        lambda: [r for r in runs if effects.of(r, "step-1", pid=a.pid)], timeout=10, what="A to start a run"
    )
    [running] = started
    [buffered] = [r for r in runs if r != running]
    assert client.get_run(buffered).status == stepwell.RunStatus.RUNNING  # claimed by A, in its buffer
    freeze(a, client, runs)
    b = workers.start(lease=LEASE, rescue_interval=0.5, concurrency=2)
    for run_id in runs:
        effects.wait_for(run_id, "step-1", pid=b.pid, timeout=15)
        effects.open_gate(run_id)
    for run_id in runs:
        assert client.wait(run_id, timeout=15).output == {"pid": b.pid, "attempt": 2}

    finish_with(a, b, client)
    assert not effects.of(buffered, pid=a.pid), "A started a buffered run after its lease had gone"
    assert [(e.label, e.pid) for e in effects.of(running)][:2] == [("step-1", a.pid), ("step-1", b.pid)]
    assert [e.label for e in effects.of(running, pid=a.pid)] == ["step-1"]  # its refused write stopped A
    for run_id in runs:
        assert client.get_run(run_id).output == {"pid": b.pid, "attempt": 2}
