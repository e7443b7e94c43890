"""DESIGN §3: on SIGTERM a worker stops claiming, gives in-flight runs its shutdown timeout to
finish, then releases their leases so that other workers take them at once."""

from __future__ import annotations

import signal
import time

import pytest

import stepwell
from tests.integration.helpers import Effects, Workers

pytestmark = pytest.mark.slow

LEASE = 60.0  # far longer than the test: only a release can hand the long run over in time
SHUTDOWN_TIMEOUT = 2.0
SLACK = 1.5


def test_sigterm_finishes_short_runs_and_releases_long_ones(
    workers: Workers, effects: Effects, client: stepwell.App
) -> None:
    short = client.enqueue("three-steps", {"hold": {"step-2": 30}})  # held until the test opens its gate
    long = client.enqueue("three-steps", {"hold": {"step-2": 30}})  # held past the shutdown timeout
    a = workers.start(lease=LEASE, concurrency=2, shutdown_timeout=SHUTDOWN_TIMEOUT)
    effects.wait_for(short, "step-2", pid=a.pid)
    effects.wait_for(long, "step-2", pid=a.pid)
    b = workers.start(lease=LEASE, concurrency=2)  # idle: both runs are leased to A

    a.signal(signal.SIGTERM)
    terminated_at = time.time()
    effects.open_gate(short)  # the short run finishes well within the shutdown timeout
    assert a.wait_exit(timeout=SHUTDOWN_TIMEOUT + 10) == 0
    exited_after = time.time() - terminated_at
    taken = effects.wait_for(long, "step-2", pid=b.pid, timeout=10)[0]
    effects.open_gate(long)

    finished = client.wait(short, timeout=5)
    assert finished.status == stepwell.RunStatus.COMPLETED, finished.error
    assert finished.output == {"pid": a.pid, "attempt": 1}
    assert [(e.label, e.pid) for e in effects.of(short)] == [
        ("step-1", a.pid),
        ("step-2", a.pid),
        ("step-3", a.pid),
        ("tail", a.pid),
    ]  # nothing of it ran again

    released = client.wait(long, timeout=10)
    assert released.status == stepwell.RunStatus.COMPLETED, released.error
    assert released.output == {"pid": b.pid, "attempt": 1}  # a release is not a lost attempt
    assert released.errors == ()
    assert [(e.label, e.pid) for e in effects.of(long)] == [
        ("step-1", a.pid),
        ("step-2", a.pid),  # cut short by the shutdown, never committed
        ("step-2", b.pid),
        ("step-3", b.pid),
        ("tail", b.pid),
    ]
    assert SHUTDOWN_TIMEOUT - 0.2 <= exited_after <= SHUTDOWN_TIMEOUT + SLACK
    assert taken.at - terminated_at <= SHUTDOWN_TIMEOUT + SLACK  # at once, not after the 60 s lease
