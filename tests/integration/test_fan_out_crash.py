"""RELIABILITY 23: the parent is SIGKILLed half-way through creating its children."""

from __future__ import annotations

import pytest

import stepwell
from tests.integration.helpers import Effects, Workers

pytestmark = pytest.mark.slow

COUNT, STALL_AT = 3000, 1700
LEASE = 2.0


def test_a_parent_killed_while_creating_children_makes_each_child_once_and_reduces_once(
    workers: Workers, effects: Effects, client: stepwell.App
) -> None:
    parent_id = client.enqueue("fan-out-parent", {"count": COUNT, "stall_at": STALL_AT})
    first = workers.start(lease=LEASE, rescue_interval=0.5, poll_interval=0.1)
    effects.wait_for(parent_id, "creating", pid=first.pid)
    assert 0 < len(client.runs(parent=parent_id, limit=10 * COUNT)) <= STALL_AT, "half the children exist"
    first.kill()

    second = workers.start(lease=LEASE, rescue_interval=0.5, poll_interval=0.1, concurrency=20)
    run = client.wait(parent_id, timeout=120)
    assert run.status == stepwell.RunStatus.COMPLETED, run.error
    assert run.output == sum(range(COUNT))
    children = client.runs(parent=parent_id, limit=10 * COUNT)
    assert len(children) == len({c.id for c in children}) == COUNT
    assert all(c.status == stepwell.RunStatus.COMPLETED for c in children)
    assert [e.pid for e in effects.of(parent_id, "reduce")] == [second.pid], "the reduce ran exactly once"
