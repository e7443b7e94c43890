"""PostgreSQL faults on a throwaway cluster (never the shared server), under a steady mixed load.

- RELIABILITY 30: the server crashes (`pg_ctl stop -m immediate`) and comes back three times
  within a minute while workers claim.
- RELIABILITY 3: the server is away for a while (`STEPWELL_PG_DOWN_SECONDS`, 4 s in CI, 20 s in
  the catalogue) during the load: every `send` either succeeds with its row or raises; none is
  acknowledged without a row.
- pg_terminate_backend of every client connection, again and again (pools, LISTEN, the client's).

Each time: no worker exits, no acknowledged event is lost, no run is duplicated, no completed
step's code runs again, no superseded attempt starts user code, per-key order and the limit
hold, no run is left running without a live lease, and every LISTEN connection comes back.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import psycopg
import pytest

import stepwell
from tests.faults import ledger
from tests.faults.checkers import Report, check
from tests.faults.faults_app import JOB, LIMIT
from tests.faults.history import History
from tests.faults.load import Load
from tests.faults.plan import seeded
from tests.faults.procs import FaultWorkers
from tests.integration.fleet import wait_drained
from tests.integration.helpers import WorkerProcess, wait_until
from tests.pg_cluster import ThrowawayCluster, pg_cluster

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
__all__ = ["pg_cluster"]  # the module-scoped fixture, imported for pytest

WORKERS = 3
LEASE = 2.0


@pytest.fixture
def database_url(pg_cluster: ThrowawayCluster) -> str:
    """The throwaway cluster whatever STEPWELL_TEST_BACKENDS says: crashing it is the point."""
    return pg_cluster.schema_url()


def listeners(cluster: ThrowawayCluster) -> int:
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'stepwell-listen %'"
        ).fetchone()
    return int(str(row[0])) if row else 0


def judged(
    client: stepwell.App, history: History, ledger_path: Path, database_url: str, fleet: list[WorkerProcess]
) -> Report:
    wait_drained(client, timeout=90)
    runs = [client.get_run(run.id) for run in client.runs(limit=20_000)]
    report = check(history.ops(), ledger.read(ledger_path), runs, limits={"limited": LIMIT}, database_url=database_url)
    print(report.summary())
    assert report.problems() == [], report.summary()
    assert all(run.status == stepwell.RunStatus.COMPLETED for run in runs), {r.status for r in runs}
    assert all(w.alive() for w in fleet), "a worker exited: " + "".join(
        w.output()[-2000:] for w in fleet if not w.alive()
    )
    return report


def start_fleet(fault_workers: FaultWorkers) -> list[WorkerProcess]:
    fleet = [fault_workers.start(lease=LEASE, concurrency=3, ready=False) for _ in range(WORKERS)]
    for worker in fleet:
        worker.wait_ready(timeout=30)
    return fleet


@pytest.mark.parametrize(
    ("restarts", "down"),
    [
        pytest.param(3, None, id="three-crashes-in-a-minute"),
        pytest.param(1, float(os.environ.get("STEPWELL_PG_DOWN_SECONDS") or 4), id="down-for-a-while"),
    ],
)
def test_postgres_crashing_under_load_breaks_no_promise(
    restarts: int,
    down: float | None,
    pg_cluster: ThrowawayCluster,
    fault_workers: FaultWorkers,
    client: stepwell.App,
    history: History,
    ledger_path: Path,
    database_url: str,
) -> None:
    rng = seeded("postgres crashes")
    fleet = start_fleet(fault_workers)
    outages = []
    with Load(client, history, rate=15, scale=0.3) as load:
        for _ in range(restarts):
            time.sleep(rng.uniform(1.0, 4.0))
            outages.append(round(pg_cluster.restart("immediate", down_for=down or rng.uniform(0.2, 2.0)), 2))
        time.sleep(1.0)
    print(f"outages (s): {outages}; {load.sent} events sent")
    assert not load.errors, load.errors[:5]
    report = judged(client, history, ledger_path, database_url, fleet)
    assert report.counts["ops ok"] > 0
    if down is not None:
        assert report.counts["ops unknown"] > 0, "no send met the outage: the test tested nothing"
    wait_until(lambda: listeners(pg_cluster) == WORKERS, timeout=20, what="every LISTEN connection back")


def test_every_connection_terminated_again_and_again_breaks_no_promise(
    pg_cluster: ThrowawayCluster,
    fault_workers: FaultWorkers,
    client: stepwell.App,
    history: History,
    ledger_path: Path,
    database_url: str,
) -> None:
    rng = seeded("terminate every connection")
    fleet = start_fleet(fault_workers)
    cut = []
    with Load(client, history, rate=15, scale=0.3) as load:
        for _ in range(4):
            time.sleep(rng.uniform(0.5, 2.0))
            cut.append(pg_cluster.terminate_all())
        time.sleep(1.0)
    print(f"connections terminated: {cut}; {load.sent} events sent")
    assert not load.errors, load.errors[:5]
    assert min(cut) >= WORKERS, "the workers' connections were not there to cut"
    judged(client, history, ledger_path, database_url, fleet)
    wait_until(lambda: listeners(pg_cluster) == WORKERS, timeout=20, what="every LISTEN connection back")


def test_a_worker_whose_renewals_fail_stops_before_its_next_step(
    pg_cluster: ThrowawayCluster,
    fault_workers: FaultWorkers,
    client: stepwell.App,
    history: History,
    ledger_path: Path,
    database_url: str,
) -> None:
    """The database goes away between two steps for longer than the lease: the heartbeat cannot
    renew, the local deadline runs out, and the worker does not call the next step's function
    (whose result it could not store under a live lease); the run completes on a later attempt."""
    history.call("client", "send", "slow-gap", lambda: client.send(JOB, {"gaps": {"a": 4.0}}, id="slow-gap"))
    worker = fault_workers.start(lease=LEASE, concurrency=1)

    def step_a_stored() -> bool:
        [run] = client.runs(function="job")
        return any(s.id == "a" and s.status == stepwell.StepStatus.COMPLETED for s in client.get_run(run.id).steps)

    wait_until(step_a_stored, timeout=20, what="step a stored", interval=0.02)
    pg_cluster.restart("fast", down_for=LEASE + 0.5)  # the worker sleeps in its gap meanwhile
    wait_drained(client, timeout=60)
    [run] = client.runs(function="job")
    assert run.status == stepwell.RunStatus.COMPLETED
    starts = [(e.step, e.attempt) for e in ledger.read(ledger_path) if e.phase == "start"]
    assert ("b", 1) not in starts, "the first attempt called step b after its lease deadline had passed"
    assert [s for s, _ in starts] == ["a", "b", "c"]
    assert worker.alive()
