"""PostgreSQL restarted under load (RELIABILITY 30): workers stay up, reconnect, and lose nothing.

They restart a throwaway cluster of their own (tests/pg_cluster.py), never the machine's shared
server: every other test run on the machine goes on undisturbed.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import TypeVar

import psycopg
import pytest

import stepwell
from stepwell.errors import StoreUnavailable
from tests.integration.fleet import (
    assert_every_job_completed,
    outcome,
    send_jobs,
    stale_leases,
    wait_drained,
    wait_for_effects,
)
from tests.integration.helpers import Effects, WorkerProcess, Workers, wait_until
from tests.pg_cluster import ThrowawayCluster, pg_cluster
from tests.pg_helpers import schema_of

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

JOBS = 3000
WORKERS = 3
CONCURRENCY = 4
HOLD = 0.005  # each job sleeps ~10 ms inside its step: the restart finds steps in flight
LEASE = 5.0
RESCUE_INTERVAL = 0.5
T = TypeVar("T")
__all__ = ["pg_cluster"]  # the module-scoped fixture, imported for pytest


@pytest.fixture
def database_url(pg_cluster: ThrowawayCluster) -> str:
    """PostgreSQL whatever STEPWELL_TEST_BACKENDS says, on the throwaway cluster that the test restarts."""
    return pg_cluster.schema_url()


def listener_pids(cluster: ThrowawayCluster, schema: str) -> list[int]:
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", [f"stepwell-listen {schema}"]
        ).fetchall()
    return [int(row[0]) for row in rows]


def reading(read: Callable[[], T]) -> T:
    """`read()`, again if the client's pooled connection was one that the restart had cut."""
    for _ in range(5):
        try:
            return read()
        except StoreUnavailable:
            time.sleep(0.2)
    return read()


@pytest.mark.parametrize("mode", ["default", "immediate"])
def test_workers_ride_out_a_postgres_restart_and_every_job_completes(
    mode: str, workers: Workers, effects: Effects, client: stepwell.App, database_url: str, pg_cluster: ThrowawayCluster
) -> None:
    fleet: list[WorkerProcess] = [
        workers.start(lease=LEASE, rescue_interval=RESCUE_INTERVAL, concurrency=CONCURRENCY, ready=False)
        for _ in range(WORKERS)
    ]
    for worker in fleet:
        worker.wait_ready(timeout=30)
    event_ids = send_jobs(client, JOBS, hold=HOLD)
    wait_for_effects(effects, JOBS // 4, timeout=30)

    down_at = time.time()
    pg_cluster.restart("fast" if mode == "default" else mode)
    back_at = time.time()
    done_before = len([e for e in effects.all() if e.at < down_at])
    assert done_before < JOBS, "the load was still running when PostgreSQL went down"

    wait_drained(client, timeout=60)
    result = reading(lambda: outcome(client, effects, event_ids))
    assert all(w.alive() for w in fleet), "a worker exited: " + ", ".join(w.name for w in fleet if not w.alive())
    assert_every_job_completed(result, JOBS)
    assert stale_leases(database_url) == 0, "a run is left 'running' without a live lease"
    schema = schema_of(database_url)
    wait_until(
        lambda: len(listener_pids(pg_cluster, schema)) == WORKERS, timeout=15, what="every LISTEN connection back"
    )

    # Re-executions: each job whose step was running when the server went away runs again, at
    # most once; no job that started after the workers had reconnected runs twice.
    repeated = result.repeated
    runs = reading(lambda: [client.get_run(run_id) for run_id in repeated])
    errors = Counter(e.type for run in runs for e in run.errors)
    print(
        f"restart ({mode}) took {back_at - down_at:.1f}s; {done_before} of {JOBS} jobs done before it; "
        f"{len(repeated)} executed twice (first/second execution after the server went down: "
        + ", ".join(f"{first.at - down_at:+.2f}/{second.at - down_at:+.2f}s" for first, second in repeated.values())
        + f"); their attempts' errors: {dict(errors)}"
    )
    assert all(len(found) == 2 for found in repeated.values()), "no job executed more than twice"
    in_flight = WORKERS * CONCURRENCY
    assert len(repeated) <= in_flight, f"{len(repeated)} jobs executed twice; at most {in_flight} were in flight"
    for first, _ in repeated.values():
        assert first.at <= back_at, f"run {first.run_id} first executed {first.at - back_at:.2f}s after the restart"

    # And the fleet still works: new jobs complete.
    later = reading(lambda: send_jobs(client, WORKERS * 20))
    wait_drained(client, timeout=30)
    assert_every_job_completed(reading(lambda: outcome(client, effects, event_ids + later)), JOBS + len(later))
