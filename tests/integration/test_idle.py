"""An idle worker waits; it does not spin (RELIABILITY 38: idle CPU near zero)."""

from __future__ import annotations

import time

import pytest

from tests.integration.helpers import Workers

pytestmark = pytest.mark.slow

MAX_SHARE_OF_A_CORE = 0.05  # a coarse bound against busy polling, not a benchmark


def test_idle_worker_uses_almost_no_cpu(workers: Workers) -> None:
    worker = workers.start(defaults=True)  # the shipped poll, heartbeat and rescue intervals
    time.sleep(0.5)  # past start-up
    cpu_before, started = worker.cpu_seconds(), time.monotonic()
    time.sleep(3)
    used, elapsed = worker.cpu_seconds() - cpu_before, time.monotonic() - started
    assert worker.alive()
    assert used / elapsed < MAX_SHARE_OF_A_CORE, f"{used:.3f}s of CPU in {elapsed:.1f}s idle"
