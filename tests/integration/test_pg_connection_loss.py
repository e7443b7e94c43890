"""A worker's pooled connections are cut (an admin's pg_terminate_backend, a failover, a proxy restart).

The step whose result write meets the dead connection has done its work; only the write failed,
with StoreUnavailable. That is the database's failure, not the function's: the run must still
complete (the write retried, or the step executed again), and never be dead-lettered for it —
here with `retries=0`, where a failure charged to the function has no attempt left.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import stepwell
from tests.conftest import PG_URL, database_url_for
from tests.integration.helpers import Effects, Workers
from tests.pg_helpers import schema_of

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

LEASE = 3.0


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """PostgreSQL whatever STEPWELL_TEST_BACKENDS says: its sessions are the point (fails if unreachable)."""
    return database_url_for("postgres", tmp_path)


def test_a_step_result_write_on_a_cut_connection_does_not_dead_letter_the_run(
    workers: Workers, effects: Effects, client: stepwell.App, database_url: str
) -> None:
    application_name = f"cut-{schema_of(database_url)}"
    workers.start(database_url=f"{database_url}&application_name={application_name}", lease=LEASE)
    run_id = client.enqueue("drops-connections", {"url": PG_URL, "application_name": application_name})

    run = client.wait(run_id, timeout=LEASE + 15)
    executions = effects.of(run_id, "cut")
    print(f"run {run.status.value} after {len(executions)} execution(s); errors: {[str(e) for e in run.errors]}")
    assert run.status == stepwell.RunStatus.COMPLETED, f"{run.status.value}: {run.error}"
    assert 1 <= len(executions) <= 2
    assert client.dead_letters(function="drops-connections") == []
