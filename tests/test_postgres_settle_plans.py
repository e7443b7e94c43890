"""Settling a batch must cost what the batch costs, however many runs are leased.

A fast worker holds tens of thousands of leased runs. With statistics taken before they were
leased, the generic plan of the old settle statements looped over the `runs_leased` index and
rescanned the `unnest` batch for every leased row (seconds per statement, statement timeouts).
Each settle statement (and the heartbeat's lease extension) must reach `runs` through its
primary key only, driven by the batch: in a custom plan and in the generic plan of a prepared
statement, with stale statistics and with fresh ones.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from stepwell.app import open_store
from stepwell.clock import VirtualClock
from stepwell.store.sqlfile import load_queries
from tests.conformance.helpers import event, new_run
from tests.conftest import pg_schemas
from tests.pg_helpers import schema_of

pytestmark = pytest.mark.postgres

QUERIES = load_queries("stepwell.store.postgres")
NOW = datetime(2030, 1, 1, tzinfo=UTC)
LEASED = 20_000
BATCH = 200
STATEMENTS = [
    "settle_runs_complete",
    "settle_runs_suspend",
    "settle_runs_retry",
    "settle_runs_fail",
    "release_runs",
    "extend_leases",
]


@pytest.fixture(scope="module", params=["stale statistics", "fresh statistics"])
def seeded(request: pytest.FixtureRequest) -> Iterator[tuple[str, dict[str, Any]]]:
    """20,000 leased runs; statistics taken before the claim (nothing running then) or after it."""
    url = pg_schemas.create(per_test=False)
    store = open_store(url, VirtualClock(NOW))
    store.migrate()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER TABLE runs SET (autovacuum_enabled = off)")  # the statistics stay as the test sets them
    store.append_events([event(at=NOW, runs=tuple(new_run(at=NOW) for _ in range(LEASED)))])
    if request.param == "stale statistics":
        _analyze(url)
    claimed = store.claim_runs(worker_id="seed", limit=LEASED, lease=timedelta(seconds=30))
    assert len(claimed) == LEASED
    if request.param == "fresh statistics":
        _analyze(url)
    batch = claimed[:: LEASED // BATCH]  # spread over the id range, as a real batch is
    values: dict[str, Any] = {
        "run_ids": [c.run_id for c in batch],
        "tokens": [c.lease.token for c in batch],
        "outputs": [b"null"] * len(batch),
        "untils": [None] * len(batch),
        "waiting": [False] * len(batch),
        "errors": [b"{}"] * len(batch),
        "delays": [timedelta(seconds=1)] * len(batch),
        "reasons": ["exhausted"] * len(batch),
        "now": NOW,
        "lease": timedelta(seconds=30),
    }
    yield url, values
    store.close()
    pg_schemas.drop([schema_of(url)])


def _analyze(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE runs")


def _plan(
    url: str, statement: str, values: dict[str, Any], plan_cache_mode: str, *, analyze: bool = False
) -> dict[str, Any]:
    """The plan of `statement` run as a prepared statement (as psycopg does after a few executions).

    With `analyze` the statement runs (and is rolled back) so that the plan holds actual row counts."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    prepared = re.sub(r"%\((\w+)\)s", number, QUERIES[statement]).replace("%%", "%")
    with psycopg.connect(url) as conn:
        conn.execute(f"SET plan_cache_mode = {plan_cache_mode}")
        conn.execute(f"PREPARE settle AS {prepared}")
        placeholders = ", ".join(["%s"] * len(names))
        cursor = psycopg.ClientCursor(conn)
        options = "ANALYZE, FORMAT JSON" if analyze else "FORMAT JSON"
        cursor.execute(f"EXPLAIN ({options}) EXECUTE settle({placeholders})", [values[n] for n in names])
        [[plan]] = cursor.fetchall()
        conn.rollback()
    return plan[0]["Plan"]  # type: ignore[no-any-return]


def _scans_of_runs(node: dict[str, Any]) -> list[tuple[str, str | None]]:
    found = []
    if node.get("Relation Name") == "runs" and node["Node Type"] != "ModifyTable":  # the UPDATE itself
        found.append((node["Node Type"], node.get("Index Name")))
    for child in node.get("Plans", ()):
        found += _scans_of_runs(child)
    return found


@pytest.mark.parametrize("plan_cache_mode", ["force_custom_plan", "force_generic_plan"])
@pytest.mark.parametrize("statement", STATEMENTS)
def test_settle_statements_reach_runs_by_primary_key_only(
    seeded: tuple[str, dict[str, Any]], statement: str, plan_cache_mode: str
) -> None:
    url, values = seeded
    scans = _scans_of_runs(_plan(url, statement, values, plan_cache_mode))
    assert scans, f"{statement} no longer reads runs?"
    assert all(scan == ("Index Scan", "runs_pkey") for scan in scans), (
        f"{statement} ({plan_cache_mode}) must find each run of the batch by primary key, "
        f"never scan the leased runs: {json.dumps(scans)}"
    )


@pytest.mark.parametrize("statement", STATEMENTS)
def test_a_generic_settle_reads_only_the_batch(seeded: tuple[str, dict[str, Any]], statement: str) -> None:
    """Executed for real (EXPLAIN ANALYZE, rolled back): about one row of runs read per batch row, per lookup."""
    url, values = seeded
    plan = _plan(url, statement, values, "force_generic_plan", analyze=True)
    read = _rows_of_runs_read(plan)
    assert read <= 3 * BATCH, f"{statement} read {read} rows of runs to settle {BATCH}"


def _rows_of_runs_read(node: dict[str, Any]) -> int:
    read = 0
    if node.get("Relation Name") == "runs" and node["Node Type"] != "ModifyTable":
        kept_or_dropped = node["Actual Rows"] + node.get("Rows Removed by Filter", 0)
        read += kept_or_dropped * node["Actual Loops"]
    return read + sum(_rows_of_runs_read(child) for child in node.get("Plans", ()))
