"""A fleet of worker processes on one database: a backlog drained, each job executed exactly once (RELIABILITY 37).

6,000 jobs in CI; STEPWELL_TEST_SCALE=full drains RELIABILITY's 100,000.

Then the same with one of the four SIGKILLed mid-way: nothing is lost, and the only jobs executed
twice are the ones the killed worker was executing when it died.
"""

from __future__ import annotations

import time

import pytest

import stepwell
from tests.integration.fleet import (
    assert_every_job_completed,
    outcome,
    scaled,
    send_jobs,
    wait_drained,
    wait_for_effects,
)
from tests.integration.helpers import Effects, WorkerProcess, Workers

# 20,000 one-step jobs took 20-50 s on the shared 2-core box (the workers and PostgreSQL share the cores)
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800 if scaled(0, 1) else 300)]

JOBS = scaled(6_000, 100_000)
WORKERS = 4
CONCURRENCY = 8
LEASE = 5.0  # long enough that a busy 2-core machine never lets a live worker's lease lapse
RESCUE_INTERVAL = 0.5
DRAIN_TIMEOUT = scaled(180, 1500)


def start_fleet(workers: Workers) -> list[WorkerProcess]:
    fleet = [
        workers.start(lease=LEASE, rescue_interval=RESCUE_INTERVAL, concurrency=CONCURRENCY, ready=False)
        for _ in range(WORKERS)
    ]
    for worker in fleet:
        worker.wait_ready(timeout=30)
    return fleet


def test_four_workers_drain_a_backlog_exactly_once(workers: Workers, effects: Effects, client: stepwell.App) -> None:
    fleet = start_fleet(workers)
    started = time.monotonic()
    event_ids = send_jobs(client, JOBS)
    wait_for_effects(effects, JOBS, timeout=DRAIN_TIMEOUT)
    wait_drained(client, timeout=30)
    elapsed = time.monotonic() - started

    result = outcome(client, effects, event_ids)
    assert_every_job_completed(result, JOBS)
    assert result.lines == len(result.per_run) == JOBS, f"{len(result.repeated)} runs executed more than once"
    assert set(result.by_pid()) == {w.pid for w in fleet}, f"every worker took a share: {result.by_pid()}"
    assert all(w.alive() for w in fleet)
    print(f"{JOBS} jobs in {elapsed:.1f}s ({JOBS / elapsed:.0f}/s), per worker: {dict(result.by_pid())}")


def test_a_worker_killed_mid_drain_loses_nothing_and_repeats_only_its_runs_in_flight(
    workers: Workers, effects: Effects, client: stepwell.App
) -> None:
    fleet = start_fleet(workers)
    started = time.monotonic()
    event_ids = send_jobs(client, JOBS, hold=0.005)  # each job sleeps ~10 ms inside its step: kills land mid-step
    wait_for_effects(effects, JOBS // 3, timeout=DRAIN_TIMEOUT)
    victim = fleet[1]
    victim.kill()
    killed_at = time.time()

    wait_drained(client, timeout=DRAIN_TIMEOUT)
    elapsed = time.monotonic() - started
    result = outcome(client, effects, event_ids)
    assert_every_job_completed(result, JOBS)

    repeated = result.repeated
    assert all(len(found) == 2 for found in repeated.values()), "no run executed more than twice"
    for run_id, (first, second) in repeated.items():
        assert first.pid == victim.pid and first.at <= killed_at, f"run {run_id}: {first} then {second}"
        assert second.pid != victim.pid and second.attempt == 2, f"run {run_id}: {first} then {second}"
    assert len(repeated) <= CONCURRENCY, f"{len(repeated)} runs re-executed; the victim ran at most {CONCURRENCY}"
    assert result.lines == JOBS + len(repeated)
    assert result.by_pid()[victim.pid] > 0, "the victim worked before it was killed"
    assert all(w.alive() for w in fleet if w is not victim)
    delays = sorted(second.at - killed_at for _, second in repeated.values())
    print(
        f"{JOBS} jobs in {elapsed:.1f}s with one worker killed: {len(repeated)} re-executed (in flight in the "
        f"victim), {', '.join(f'{d:.1f}' for d in delays)}s after the kill; per worker: {dict(result.by_pid())}"
    )
