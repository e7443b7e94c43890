"""A randomized pause campaign (RELIABILITY 13a): workers SIGSTOPped at random moments for random
lengths, some well past their lease, while jobs, ordered keys and a concurrency limit flow.

The checkers must find nothing: no acknowledged event lost, no run twice, no completed step's
code run again, no superseded attempt starting user code, FIFO per key, never over the limit,
no run left running without a live lease. Short in CI; `STEPWELL_PAUSE_CAMPAIGN_SECONDS` makes it
longer, `STEPWELL_FAULT_SEED` replays one.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

import stepwell
from tests.faults import ledger
from tests.faults.checkers import check
from tests.faults.faults_app import LIMIT
from tests.faults.history import History
from tests.faults.load import Load
from tests.faults.plan import seconds, seeded
from tests.faults.procs import FaultWorkers
from tests.integration.fleet import wait_drained

pytestmark = pytest.mark.slow

LEASE = 1.5
WORKERS = 3


def test_random_pauses_past_the_lease_break_no_promise(
    fault_workers: FaultWorkers, client: stepwell.App, history: History, ledger_path: Path, database_url: str
) -> None:
    rng = seeded("pause campaign")
    length = seconds("STEPWELL_PAUSE_CAMPAIGN_SECONDS", 6)
    fleet = [fault_workers.start(lease=LEASE, concurrency=2) for _ in range(WORKERS)]
    pauses = []
    with Load(client, history, rate=8) as load:
        ends = time.monotonic() + length
        while time.monotonic() < ends:
            victim = rng.choice(fleet)
            pause = rng.uniform(0.1, 2 * LEASE)
            victim.signal(signal.SIGSTOP)
            time.sleep(pause)
            victim.signal(signal.SIGCONT)
            pauses.append(round(pause, 2))
            time.sleep(rng.uniform(0.05, 0.3))
    print(f"{len(pauses)} pauses over {length:g}s, {load.sent} events: {pauses}")

    wait_drained(client, timeout=90)
    runs = [client.get_run(run.id) for run in client.runs(limit=10_000)]
    report = check(history.ops(), ledger.read(ledger_path), runs, limits={"limited": LIMIT}, database_url=database_url)
    print(report.summary())
    assert report.problems() == [], report.summary()
    assert all(run.status == stepwell.RunStatus.COMPLETED for run in runs), {r.status for r in runs}
    assert all(worker.alive() for worker in fleet)
