"""The claim query must walk its partial index of ready runs: fails when a change makes it scan the table."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from stepwell.app import open_store
from stepwell.clock import VirtualClock
from stepwell.store.base import Complete, Store
from stepwell.store.sqlfile import load_queries
from tests.conformance.helpers import event, new_run
from tests.conftest import pg_schemas
from tests.pg_helpers import schema_of

pytestmark = pytest.mark.postgres

CLAIM = load_queries("stepwell.store.postgres")["claim_runs"]
NOW = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def seeded() -> Iterator[tuple[Store, str]]:
    """A realistic queue: 15,000 finished runs, a few hundred ready ones, statistics up to date."""
    clock = VirtualClock(NOW)
    url = pg_schemas.create(per_test=False)
    store = open_store(url, clock)
    store.migrate()
    for _ in range(3):
        runs = tuple(new_run(at=NOW) for _ in range(5000))
        store.append_events([event(at=NOW, runs=runs)])
        claimed = store.claim_runs(worker_id="seed", limit=5000, lease=timedelta(seconds=30))
        store.settle_runs([Complete(c.lease, b"null") for c in claimed])
    store.append_events([event(at=NOW, runs=tuple(new_run(at=NOW, priority=i % 3) for i in range(300)))])
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE runs")
    yield store, url
    store.close()
    pg_schemas.drop([schema_of(url)])


def _plan(url: str, *settings: str, functions: list[str] | None = None) -> dict[str, Any]:
    params = {"worker_id": "w", "token": "t", "lease": timedelta(seconds=30), "now": NOW, "limit": 100}
    params["functions"] = functions  # None: every function; a worker passes its app's
    with psycopg.connect(url) as conn:
        for setting in settings:
            conn.execute(setting)
        [[plan]] = conn.execute("EXPLAIN (FORMAT JSON) " + CLAIM, params).fetchall()  # type: ignore[arg-type]
        conn.rollback()
    return plan[0]["Plan"]  # type: ignore[no-any-return]


def _scans_of_runs(node: dict[str, Any]) -> list[tuple[str, str | None]]:
    found = []
    if node.get("Relation Name") == "runs":
        found.append((node["Node Type"], node.get("Index Name")))
    for child in node.get("Plans", ()):
        found += _scans_of_runs(child)
    return found


@pytest.mark.parametrize("functions", [None, ["fn", "other"]])
def test_the_claim_picks_ready_runs_through_the_runs_ready_index(
    seeded: tuple[Store, str], functions: list[str] | None
) -> None:
    _, url = seeded
    scans = _scans_of_runs(_plan(url, functions=functions))
    assert ("Index Scan", "runs_ready") in scans, json.dumps(scans)
    assert not any(kind == "Seq Scan" for kind, _ in scans), json.dumps(scans)


def test_the_claim_walks_runs_ready_while_a_function_is_paused(seeded: tuple[Store, str]) -> None:
    """The pause filter (set_function_paused) must not turn the claim into a sort of every ready run: in this
    queue every run is of one function, whose statistics would predict that the filter passes nothing."""
    _, url = seeded
    plan = _plan(url, "INSERT INTO function_pauses (function, paused_at) VALUES ('other', now())")
    scans = _scans_of_runs(plan)
    assert ("Index Scan", "runs_ready") in scans, json.dumps(scans)
    assert '"Sort"' not in json.dumps(_picking_subplan(plan)), "the index order must serve ORDER BY"


def test_the_index_serves_the_claim_even_when_the_planner_may_not_scan_the_table(seeded: tuple[Store, str]) -> None:
    _, url = seeded
    plan = _plan(url, "SET LOCAL enable_seqscan = off", "SET LOCAL enable_bitmapscan = off")
    assert "runs_ready" in json.dumps(plan)
    assert '"Sort"' not in json.dumps(_picking_subplan(plan)), (
        "the index order must serve ORDER BY priority, available_at"
    )


def _picking_subplan(node: dict[str, Any]) -> dict[str, Any]:
    """The LockRows node of the `picked` CTE: FOR UPDATE SKIP LOCKED over the ready rows."""
    if node.get("Node Type") == "LockRows":
        return node
    for child in node.get("Plans", ()):
        found = _picking_subplan(child)
        if found:
            return found
    return {}
