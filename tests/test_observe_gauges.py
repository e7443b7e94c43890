"""Queue gauges against a large backlog: per-function depth and oldest age from a bounded scan.

200,000 ready runs are seeded with one bulk INSERT; the sample reads at most `scan_limit` entries
of the ready index whatever the backlog, which the query plan shows (EXPLAIN on both backends).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from stepwell.app import open_store
from stepwell.clock import VirtualClock
from stepwell.observe import gauges, metrics
from stepwell.store.base import Store
from stepwell.store.sqlfile import load_queries
from tests.conftest import BACKENDS, database_url_for, pg_schemas
from tests.pg_helpers import schema_of

NOW = datetime(2030, 1, 1, tzinfo=UTC)
BACKLOG = 200_000
OLDEST = NOW - timedelta(hours=1)
_NUMBERS = "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < {limit}) SELECT n FROM c"


def _seed_sqlite(path: Path) -> None:
    start_us = int(OLDEST.timestamp() * 1_000_000)
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO runs (id, function, status, max_attempts, available_at, created_at) "
                     "SELECT printf('gamma%027d', n), 'gamma', 'queued', 4, ?, ? "
                     f"FROM ({_NUMBERS.format(limit='5')})",
                     (start_us, start_us))  # fmt: skip
        conn.execute("INSERT INTO runs (id, function, status, max_attempts, available_at, created_at) "
                     "SELECT printf('run%029d', n), CASE WHEN n % 4 = 0 THEN 'beta' ELSE 'alpha' END, 'queued', 4, "
                     "?1 + n, ?1 + n "
                     f"FROM ({_NUMBERS.format(limit='?2')})",
                     (start_us + 60_000_000, BACKLOG))  # fmt: skip
        conn.execute("ANALYZE")


def _seed_postgres(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO runs (id, function, status, max_attempts, available_at, created_at) "
                     "SELECT 'gamma' || lpad(n::text, 27, '0'), 'gamma', 'queued', 4, %(t)s, %(t)s "
                     "FROM generate_series(1, 5) n", {"t": OLDEST})  # fmt: skip
        conn.execute("INSERT INTO runs (id, function, status, max_attempts, available_at, created_at) "
                     "SELECT 'run' || lpad(n::text, 29, '0'), CASE WHEN n %% 4 = 0 THEN 'beta' ELSE 'alpha' END, "
                     "'queued', 4, %(t)s + n * interval '1 microsecond', %(t)s "
                     "FROM generate_series(1, %(n)s) n",
                     {"t": OLDEST + timedelta(minutes=1), "n": BACKLOG})  # fmt: skip
        conn.execute("ANALYZE runs")


@pytest.fixture(scope="module", params=BACKENDS)
def backlog(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Store]]:
    backend = str(request.param)
    tmp = tmp_path_factory.mktemp("gauges")
    url = database_url_for(backend, tmp) if backend == "sqlite" else pg_schemas.create(per_test=False)
    store = open_store(url, VirtualClock(NOW))
    store.migrate()
    if backend == "sqlite":
        _seed_sqlite(tmp / "stepwell.db")
    else:
        _seed_postgres(url)
    yield url, store
    store.close()
    if backend != "sqlite":
        pg_schemas.drop([schema_of(url)])


def test_the_sample_sees_the_oldest_and_stops_at_its_limit(backlog: tuple[str, Store]) -> None:
    _, store = backlog
    found = metrics.install()
    gauges.sample(store, ["alpha", "beta", "gamma", "idle"], scan_limit=10_000)
    depth = {name: found.registry.get_sample_value("stepwell_queue_depth", {"function": name})
             for name in ("alpha", "beta", "gamma", "idle")}  # fmt: skip
    assert depth["gamma"] == 5 and depth["idle"] == 0
    assert depth["alpha"] + depth["beta"] == 10_000 - 5  # type: ignore[operator]
    assert found.registry.get_sample_value("stepwell_queue_scan_capped") == 1
    age = found.registry.get_sample_value("stepwell_queue_oldest_ready_age_seconds", {"function": "gamma"})
    assert age == 3600
    assert found.registry.get_sample_value("stepwell_queue_oldest_ready_age_seconds", {"function": "idle"}) == 0


def test_a_limit_above_the_backlog_counts_it_exactly(backlog: tuple[str, Store]) -> None:
    _, store = backlog
    queues = {q.function: q for q in store.queue_gauges(scan_limit=BACKLOG + 100)}
    assert (queues["alpha"].ready, queues["beta"].ready, queues["gamma"].ready) == (150_000, 50_000, 5)
    assert not queues["alpha"].capped


def _pg_scans(node: dict[str, Any]) -> list[tuple[str, str | None]]:
    found = [(node["Node Type"], node.get("Index Name"))] if node.get("Relation Name") == "runs" else []
    for child in node.get("Plans", ()):
        found += _pg_scans(child)
    return found


def test_the_sample_walks_the_ready_index_only(backlog: tuple[str, Store]) -> None:
    url, _ = backlog
    if url.startswith("sqlite"):
        query = load_queries("stepwell.store.sqlite", "logs.sql")["queue_gauges"]
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            plan = " | ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + query, {"now": 0, "scan": 10}))
        assert "USING INDEX runs_ready" in plan and "SCAN runs " not in plan + " ", plan
        return
    query = load_queries("stepwell.store.postgres", "logs.sql")["queue_gauges"]
    with psycopg.connect(url) as conn:
        [[explained]] = conn.execute("EXPLAIN (FORMAT JSON) " + query, {"now": NOW, "scan": 10_000}).fetchall()  # type: ignore[arg-type]
    scans = _pg_scans(explained[0]["Plan"])
    assert scans and all(index == "runs_ready" for _, index in scans), json.dumps(scans)
    assert '"Limit"' in json.dumps(explained)
