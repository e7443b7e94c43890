"""RELIABILITY 14: an always-failing job is retried at its backoff times, then dead-lettered."""

from __future__ import annotations

import itertools
import time

import pytest

import stepwell
from stepwell.model.records import FailureReason
from tests.integration.helpers import Effects, Workers, wait_until
from tests.integration.integration_app import RETRY_BACKOFF

pytestmark = pytest.mark.slow

POLL_INTERVAL = 0.05
OVERHEAD = 0.2  # settle, the next poll, a claim and a replay, on a loaded machine


def test_failing_job_is_retried_on_its_backoff_schedule_then_dead_lettered(
    workers: Workers, effects: Effects, client: stepwell.App
) -> None:
    run_id = client.enqueue("always-fails")  # retries=3, backoff 0.2 s x2 ±20%
    workers.start(poll_interval=POLL_INTERVAL)
    wait_until(lambda: client.dead_letters(), timeout=15, what="the dead letter")
    time.sleep(0.5)  # room for an attempt too many

    tries = effects.of(run_id, "try")
    assert [e.attempt for e in tries] == [1, 2, 3, 4]  # no fifth attempt
    base, jitter = RETRY_BACKOFF.base.total_seconds(), RETRY_BACKOFF.jitter
    for failed, (before, after) in enumerate(itertools.pairwise(tries), start=1):
        delay = base * RETRY_BACKOFF.factor ** (failed - 1)
        gap = after.at - before.at
        assert delay * (1 - jitter) - 0.005 <= gap <= delay * (1 + jitter) + OVERHEAD, (failed, gap, delay)

    run = client.get_run(run_id)
    assert run.status == stepwell.RunStatus.FAILED
    assert run.attempt == 4
    assert [(e.type, e.step, e.message) for e in run.errors] == [
        ("RuntimeError", "try", f"failure of attempt {n}") for n in range(1, 5)
    ]
    assert run.step("try").status == stepwell.StepStatus.FAILED
    [letter] = client.dead_letters()
    assert (letter.run_id, letter.reason, letter.attempts) == (run_id, FailureReason.RETRIES_EXHAUSTED, 4)
    assert letter.error.message == "failure of attempt 4"
