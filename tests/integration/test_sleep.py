"""RELIABILITY 17: a run that sleeps longer than the lease is not claimed early and runs once at its time."""

from __future__ import annotations

import pytest

import stepwell
from tests.integration.helpers import Effects, Workers

pytestmark = pytest.mark.slow

LEASE = 1.0
SLEEP = 3 * LEASE
POLL_INTERVAL = 0.05


def test_a_sleeping_run_is_not_claimed_before_its_time_and_wakes_once(
    workers: Workers, effects: Effects, client: stepwell.App
) -> None:
    run_id = client.enqueue("nap", {"seconds": SLEEP})
    for _ in range(2):  # two workers polling and rescuing all along
        workers.start(lease=LEASE, rescue_interval=0.2, poll_interval=POLL_INTERVAL)

    run = client.wait(run_id, timeout=SLEEP + 10)
    assert run.status == stepwell.RunStatus.COMPLETED, run.error
    [before] = effects.of(run_id, "before")
    [after] = effects.of(run_id, "after")
    assert len(effects.of(run_id, "entry")) == 2  # claimed to start and claimed to wake: never in between
    assert SLEEP <= after.at - before.at <= SLEEP + POLL_INTERVAL + 0.5
    assert (run.attempt, run.errors) == (1, ())  # sleeping is not a lease that expires
