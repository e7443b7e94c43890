"""Many workers started at once on an empty queue, then a burst (RELIABILITY 38).

Idle, they cost almost no CPU; under the burst every job runs exactly once; and the database
connections they hold never exceed workers x (stepwell_pool_max + 1 LISTEN connection).

CI runs a short version (20, 10 and 4 workers, a burst of 3,000); STEPWELL_TEST_SCALE=full runs
RELIABILITY's 50 workers and 10,000 jobs. This server allows 100 connections (`max_connections`),
shared with every other test run on the machine, so at full scale the big fleets stay near 50
connections: 50 workers with LISTEN off (polling only, as behind PgBouncer in transaction mode)
and 24 workers with LISTEN on, each with a pool of one (50 workers with LISTEN on would need
100, the whole server). A pool of one is full from the start, so those two show that nothing
opens connections beside the pool and the listener; the third fleet, 8 workers with pools of 3,
shows that pools grow under the burst and stop at their maximum.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import stepwell
from tests.conftest import database_url_for
from tests.integration.fleet import (
    ConnectionSampler,
    assert_every_job_completed,
    outcome,
    scaled,
    send_jobs,
    wait_drained,
)
from tests.integration.helpers import Effects, Workers, wait_until
from tests.pg_helpers import listener_pids, schema_of

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(240)]

BURST = scaled(3_000, 10_000)
CONCURRENCY = 4  # low, yet enough that 50 processes on 2 cores drain the burst in ~20 s
POLL_INTERVAL = 0.5  # the shipped defaults: idle cost as deployed
RESCUE_INTERVAL = 5.0
LEASE = 30.0
IDLE_CPU_PER_WORKER = 0.02  # share of a core: a coarse bound against busy polling, not a benchmark


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """PostgreSQL whatever STEPWELL_TEST_BACKENDS says: connections are the point (fails if unreachable)."""
    return database_url_for("postgres", tmp_path)


@pytest.mark.parametrize(
    ("count", "listen", "pool_max"),
    [(scaled(20, 50), False, 1), (scaled(10, 24), True, 1), (scaled(4, 8), True, 3)],
    ids=["polling-pool1", "listening-pool1", "listening-pool3"],
)
def test_a_fleet_started_at_once_idles_cheaply_and_takes_a_burst_within_its_connections(
    count: int, listen: bool, pool_max: int, workers: Workers, effects: Effects, client: stepwell.App, database_url: str
) -> None:
    schema = schema_of(database_url)
    application_name = f"fleet-{schema}"  # the pooled sessions of this test's workers, and no one else's
    worker_url = (
        f"{database_url}&application_name={application_name}"
        f"&stepwell_pool_max={pool_max}&stepwell_listen={'on' if listen else 'off'}"
    )
    per_worker = pool_max + (1 if listen else 0)
    budget = count * per_worker
    sampler = ConnectionSampler([application_name, f"stepwell-listen {schema}"])

    with sampler.running():
        started = time.monotonic()
        fleet = [
            workers.start(
                database_url=worker_url,
                concurrency=CONCURRENCY,
                lease=LEASE,
                rescue_interval=RESCUE_INTERVAL,
                poll_interval=POLL_INTERVAL,
                ready=False,
            )
            for _ in range(count)
        ]
        for worker in fleet:
            worker.wait_ready(timeout=60)
        ready_after = time.monotonic() - started
        if listen:
            wait_until(lambda: len(listener_pids(schema)) == count, timeout=20, what=f"{count} LISTEN connections")

        time.sleep(1.0)  # past start-up
        cpu_before, idle_from = sum(w.cpu_seconds() for w in fleet), time.monotonic()
        time.sleep(3.0)
        idle_cpu = (sum(w.cpu_seconds() for w in fleet) - cpu_before) / (time.monotonic() - idle_from)
        before_burst = len(sampler.samples)

        burst_at = time.monotonic()
        event_ids = send_jobs(client, BURST)
        wait_drained(client, timeout=120)  # ~20 s on a quiet box; more when other test runs share the cores
        burst_took = time.monotonic() - burst_at

    result = outcome(client, effects, event_ids)
    idle_peak = max(sampler.samples[:before_burst], default=0)
    burst_peak = max(sampler.samples[before_burst:], default=0)
    print(
        f"{count} workers ({'LISTEN' if listen else 'polling'}) ready in {ready_after:.1f}s; idle CPU "
        f"{idle_cpu:.3f} cores in all; {BURST} jobs in {burst_took:.1f}s; connections: peak "
        f"{idle_peak} before the burst, {burst_peak} during it, of a budget of {budget}; jobs per worker "
        f"{min(result.by_pid().values(), default=0)}..{max(result.by_pid().values(), default=0)}"
    )
    assert all(w.alive() for w in fleet)
    assert idle_cpu / count < IDLE_CPU_PER_WORKER, f"{idle_cpu:.2f} cores used by {count} idle workers"
    assert_every_job_completed(result, BURST)
    assert result.lines == BURST, f"{len(result.repeated)} jobs executed more than once"
    assert 0 < sampler.peak <= budget, f"{sampler.peak} connections for {count} workers; budget {budget}"
