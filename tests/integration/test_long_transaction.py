"""A long transaction held open in another session while jobs flow (RELIABILITY 28).

The session is a producer's transactional enqueue that stays open (REPEATABLE READ, so its
snapshot holds back vacuum for the whole database). The engine must keep working around it:
its uncommitted run is invisible and blocks nobody, every other job runs once, the dead rows it
keeps alive are visible, and so is the transaction itself, with the monitoring query that
docs/deploy.md gives. Once it commits, its run starts.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

import stepwell
from tests.conftest import database_url_for
from tests.integration.fleet import (
    assert_every_job_completed,
    executions,
    outcome,
    pg_connect,
    send_jobs,
    wait_drained,
    wait_for_effects,
)
from tests.integration.helpers import Effects, Workers, wait_until
from tests.integration.integration_app import FLEET_EVENT
from tests.pg_helpers import schema_of

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

JOBS = 10_000
WORKERS = 2
CONCURRENCY = 8

# docs/deploy.md, "Monitoring": the oldest open transactions, whoever holds them.
OLDEST_TRANSACTIONS = """
SELECT pid, application_name, state, now() - xact_start AS age, age(backend_xmin) AS xmin_age
FROM pg_stat_activity
WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid()
ORDER BY xact_start
"""


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """PostgreSQL whatever STEPWELL_TEST_BACKENDS says: vacuum horizons are the point (fails if unreachable)."""
    return database_url_for("postgres", tmp_path)


def dead_rows_after_vacuum(url: str) -> int:
    """VACUUM the runs table; what it could not remove is left in n_dead_tup."""
    with pg_connect(url) as conn:
        conn.execute("VACUUM runs")
        row = conn.execute(
            "SELECT n_dead_tup FROM pg_stat_user_tables WHERE schemaname = current_schema() AND relname = 'runs'"
        ).fetchone()
    assert row is not None and isinstance(row[0], int)
    return row[0]


def test_jobs_flow_past_a_long_open_transaction_and_its_run_starts_at_commit(
    workers: Workers, effects: Effects, client: stepwell.App, database_url: str
) -> None:
    for _ in range(WORKERS):
        workers.start(lease=5.0, rescue_interval=0.5, concurrency=CONCURRENCY)
    long = psycopg.connect(database_url, application_name=f"long-{schema_of(database_url)}")
    try:
        long.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        long.execute("SELECT count(*) FROM runs").fetchone()  # the snapshot is taken: vacuum's horizon stops here
        held_event = client.send(FLEET_EVENT, {"n": -1}, connection=long)  # an outbox write, not committed
        opened_at = time.monotonic()

        event_ids = send_jobs(client, JOBS)
        wait_for_effects(effects, JOBS, timeout=90)
        wait_drained(client, timeout=30)
        flowed_in = time.monotonic() - opened_at

        result = outcome(client, effects, event_ids)
        assert_every_job_completed(result, JOBS)
        assert result.lines == JOBS, f"{len(result.repeated)} jobs executed more than once"
        assert client.runs(event_id=held_event) == [], "the uncommitted run is invisible"

        stuck = dead_rows_after_vacuum(database_url)
        assert stuck >= JOBS, f"only {stuck} dead row versions kept: the open snapshot should keep them all"
        with pg_connect() as monitor:
            oldest = monitor.execute(OLDEST_TRANSACTIONS).fetchall()
        mine = [row for row in oldest if row[1] == f"long-{schema_of(database_url)}"]
        assert mine and mine[0][2] == "idle in transaction", oldest
        assert isinstance(age := mine[0][3], timedelta) and age.total_seconds() >= flowed_in - 1

        long.commit()
        committed_at = time.monotonic()
        [held_run] = wait_until(lambda: client.runs(event_id=held_event), timeout=5, what="the committed run")
        run = client.wait(held_run.id, timeout=10)
        started_after = time.monotonic() - committed_at
    finally:
        long.close()

    assert run.status == stepwell.RunStatus.COMPLETED, run.error
    assert len(executions(effects)[run.id]) == 1
    print(
        f"{JOBS} jobs done in {flowed_in:.1f}s past an open transaction; VACUUM left {stuck} dead row versions "
        f"of runs; after the commit: {dead_rows_after_vacuum(database_url)}; its run started "
        f"{started_after:.2f}s after the commit"
    )
