"""RELIABILITY 13: runs far longer than the lease keep it, even while sync steps hog the CPU."""

from __future__ import annotations

import pytest

import stepwell
from tests.integration.helpers import Effects, Workers

pytestmark = pytest.mark.slow

LEASE = 1.0


def test_heartbeat_keeps_the_lease_of_a_cpu_bound_run_five_times_the_lease(
    workers: Workers, effects: Effects, client: stepwell.App
) -> None:
    hogs = [client.enqueue("hog", {"seconds": 5 * LEASE}) for _ in range(2)]  # two threads fighting for the GIL
    for _ in range(2):  # each rescues expired leases and would take a lapsed run at once
        workers.start(lease=LEASE, rescue_interval=0.2, poll_interval=0.05, concurrency=2)

    for run_id in hogs:
        run = client.wait(run_id, timeout=5 * LEASE + 10)
        assert run.status == stepwell.RunStatus.COMPLETED, run.error
        assert run.output["seconds"] >= 5 * LEASE
        assert len(effects.of(run_id, "hog")) == 1  # ran once
        assert run.attempt == 1
        assert run.errors == ()  # no LeaseExpired
