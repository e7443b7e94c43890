"""Every runs filter the dashboard offers is read through an index, never a scan of the runs table
(EXPLAIN on both stores, over seeded data so that PostgreSQL's planner sees real statistics)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from bench.dashboard import make_app, seed_postgres

from stepwell.model.records import RunStatus
from stepwell.store.base import RunFilter
from stepwell.store.sqlfile import load_queries
from stepwell.store.sqlite.reads import B, statement_for
from tests.conftest import pg_schemas

FILTERS = {
    "newest": RunFilter(limit=50),
    "function": RunFilter(function="fn7", limit=50),
    "status": RunFilter(status=RunStatus.FAILED, limit=50),
    "key": RunFilter(ordering_key="key-42", limit=50),
    "event": RunFilter(event_id="e", limit=50),
    "parent": RunFilter(parent_id="parent-1", limit=50),
    "since": RunFilter(created_after=datetime(2029, 12, 31, tzinfo=UTC), limit=50),
    "function and status": RunFilter(function="fn7", status=RunStatus.FAILED, limit=50),
}


def _params(query: RunFilter, stamp: Any) -> dict[str, Any]:
    return {
        "event_id": query.event_id, "function": query.function, "parent_id": query.parent_id, "limit": query.limit,
        "status": query.status.value if query.status else None, "ordering_key": query.ordering_key,
        "created_after": stamp(query.created_after), "created_before": None, "page_at": None, "page_id": None,
    }  # fmt: skip


def test_sqlite_reads_every_filter_through_an_index(tmp_path: Path) -> None:
    path = tmp_path / "explain.db"
    app = make_app(f"sqlite:///{path}")
    app.store.migrate()
    seed = app.send("bench.template", {"fail": False})
    assert seed
    app.close()
    conn = sqlite3.connect(path)
    for name, query in FILTERS.items():

        def stamp(moment: datetime | None) -> int | None:
            return None if moment is None else int(moment.timestamp() * 1_000_000)

        plan = " | ".join(
            row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + B[statement_for(query)], _params(query, stamp))
        )
        assert "USING INDEX" in plan and "SCAN runs" not in plan, f"{name}: {plan}"
    endings = load_queries("stepwell.store.sqlite", "audit.sql")["recent_endings"]
    plan = conn.execute("EXPLAIN QUERY PLAN " + endings, {"status": "completed", "since": 0, "limit": 10}).fetchall()
    assert "COVERING INDEX runs_status_ended" in plan[0][3] and len(plan) == 1, plan  # no sort, no row read
    events = load_queries("stepwell.store.sqlite", "audit.sql")["list_recent_events"]
    plan = conn.execute("EXPLAIN QUERY PLAN " + events, {"before_at": None, "before_id": None, "limit": 50}).fetchall()
    assert "USING INDEX events_received_at" in plan[0][3], plan
    dead = conn.execute(
        "EXPLAIN QUERY PLAN " + load_queries("stepwell.store.sqlite")["list_dead_letters"],
        {"function": None, "limit": 100},
    ).fetchall()
    assert "USING INDEX" in dead[0][3], dead
    _sqlite_insight_plans(conn)


def _sqlite_insight_plans(conn: sqlite3.Connection) -> None:
    """Payload search reads its window through the filter's index; percentiles and the fan-out list too."""
    insight = load_queries("stepwell.store.sqlite", "insight.sql")
    payload = {"scan_limit": 100, "kind": "number", "path": '$."a"', "value": 1}
    for name, query in FILTERS.items():
        statement = insight["search_runs_by_" + statement_for(query).removeprefix("list_runs_by_")]
        plan = " | ".join(
            row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + statement, {**_params(query, _stamp), **payload})
        )
        assert "SEARCH runs USING INDEX" in plan and "SCAN runs" not in plan, f"search {name}: {plan}"
    window = {"since": 0, "now": 10, "limit": 10}
    plan = " | ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + insight["function_durations"], window))
    assert plan.count("USING COVERING INDEX runs_status_ended") == 2 and "SCAN runs" not in plan, plan
    cursor = {"limit": 10, "count_limit": 10, "before_at": 5, "before_parent": "p", "before_step": "s"}
    plan = " | ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + insight["list_fan_outs"], cursor))
    for index in ("fan_outs_created", "runs_unfinished_children", "runs_failed_children"):
        assert f"USING INDEX {index}" in plan, plan


def _stamp(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1_000_000)


@pytest.fixture
def seeded_postgres() -> Iterator[str]:
    """A fresh schema on the real PostgreSQL whatever STEPWELL_TEST_BACKENDS says: this plan is
    PostgreSQL's, and the suite fails, never skips, when the server is away."""
    database_url = pg_schemas.create()
    app = make_app(database_url)
    from bench.dashboard import _templates

    _templates(app)
    seed_postgres(database_url, 30_000, 1_000)
    app.close()
    yield database_url


def _scans(node: dict[str, Any]) -> list[str]:
    found = [node["Node Type"]] if node.get("Relation Name") == "runs" else []
    for child in node.get("Plans", []):
        found += _scans(child)
    return found


@pytest.mark.postgres
def test_postgres_reads_every_filter_through_an_index(seeded_postgres: str) -> None:
    import psycopg

    statement = load_queries("stepwell.store.postgres")["list_runs"]
    with psycopg.connect(seeded_postgres) as conn:
        for name, query in FILTERS.items():
            [[plan]] = conn.execute("EXPLAIN (FORMAT JSON) " + statement, _params(query, lambda m: m)).fetchall()  # type: ignore[arg-type]
            scans = _scans(plan[0]["Plan"])
            assert scans and "Seq Scan" not in scans, f"{name}: {scans}"
        insight = load_queries("stepwell.store.postgres", "insight.sql")
        payload = {"scan_limit": 100, "path": ["a"], "value": "1"}
        for name, query in FILTERS.items():
            params = {**_params(query, lambda m: m), **payload}
            [[plan]] = conn.execute("EXPLAIN (FORMAT JSON) " + insight["search_runs"], params).fetchall()  # type: ignore[arg-type]
            scans = _scans(plan[0]["Plan"])
            assert scans and "Seq Scan" not in scans, f"search {name}: {scans}"
        window = {"since": datetime(2029, 1, 1, tzinfo=UTC), "now": datetime(2031, 1, 1, tzinfo=UTC), "limit": 10_000}
        [[plan]] = conn.execute("EXPLAIN (FORMAT JSON) " + insight["function_durations"], window).fetchall()  # type: ignore[arg-type]
        scans = _scans(plan[0]["Plan"])
        assert scans and "Seq Scan" not in scans, f"function_durations: {scans}"
