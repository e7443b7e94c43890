"""Workers SIGKILLed while holding ordered keys and concurrency slots (RELIABILITY 19, 21), on every store.

Per key, runs start in event order and never overlap, though the worker holding a key dies; a
concurrency limit of 3 is never exceeded, though two workers die holding slots, and the slots
come back when their leases expire. Kill moments come from a seeded plan (printed; replay with
STEPWELL_FAULT_SEED).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

import stepwell
from tests.faults import ledger
from tests.faults.checkers import check
from tests.faults.faults_app import LIMIT, LIMITED, ORDERED
from tests.faults.history import History
from tests.faults.plan import seeded
from tests.faults.procs import FaultWorkers
from tests.integration.fleet import wait_drained
from tests.integration.helpers import wait_until

pytestmark = pytest.mark.slow

KEYS = 4
KILLS = int(os.environ.get("STEPWELL_KILL_CAMPAIGN_KILLS") or 2)  # more on demand, with work to match
PER_KEY = 10 * max(1, KILLS // 2)
LIMITED_RUNS = 24 * max(1, KILLS // 2)


def test_killed_workers_break_neither_key_order_nor_a_concurrency_limit(
    fault_workers: FaultWorkers, client: stepwell.App, history: History, ledger_path: Path, database_url: str
) -> None:
    rng = seeded("kills")
    for seq in range(PER_KEY):
        for key in range(KEYS):
            event = f"ordered-{key}-{seq}"
            data = {"key": f"k{key}", "seq": seq, "pause": 0.3}
            history.call("client", "send", event, lambda e=event, d=data: client.send(ORDERED, d, id=e))
    for n in range(LIMITED_RUNS):
        event = f"limited-{n}"
        history.call("client", "send", event, lambda e=event: client.send(LIMITED, {"pause": 0.4}, id=e))
    fleet = [fault_workers.start(lease=1.0, concurrency=3, ready=False) for _ in range(4)]
    for worker in fleet:
        worker.wait_ready(timeout=30)

    killed: dict[int, float] = {}
    for _ in range(KILLS):  # kill a worker while it is inside user code, at a seeded moment
        time.sleep(rng.uniform(0.2, 1.0))
        busy = wait_until(
            lambda: [w for w in fleet if w.alive() and open_executions(ledger_path, w.pid)],
            timeout=20,
            what="a worker inside user code",
        )
        victim = rng.choice(busy)
        victim.kill()
        killed[victim.pid] = time.time()
        fleet.append(fault_workers.start(lease=1.0, concurrency=3, ready=False))
    print(f"killed {sorted(killed)}")

    wait_drained(client, timeout=60)
    runs = [client.get_run(run.id) for run in client.runs(limit=1000)]
    executions = ledger.read(ledger_path)
    report = check(history.ops(), executions, runs, limits={"limited": LIMIT}, database_url=database_url, deaths=killed)
    print(report.summary())
    assert report.problems() == [], report.summary()
    assert report.concurrency["limited"] == LIMIT  # the limit was reached, so it was tested
    assert all(run.status == stepwell.RunStatus.COMPLETED for run in runs)
    assert {e.pid for e in executions} & set(killed), "no killed worker had executed anything"


def open_executions(path: Path, pid: int) -> bool:
    """Whether `pid` has begun user code it has not finished."""
    found = [e for e in ledger.read(path) if e.pid == pid]
    begun = {(e.run, e.attempt, e.step) for e in found if e.phase == "start"}
    ended = {(e.run, e.attempt, e.step) for e in found if e.phase == "end"}
    return bool(begun - ended)
