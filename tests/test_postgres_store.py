"""What only the PostgreSQL store has: URL options, session settings, database time, driver errors,
migrations printed for other tools and applied by several processes at once."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from stepwell.app import migration_sql, open_store
from stepwell.cli import main
from stepwell.clock import SystemClock
from stepwell.errors import ConfigurationError, StoreUnavailable
from stepwell.store.postgres.options import PostgresOptions, split_url
from stepwell.store.postgres.store import PostgresStore
from stepwell.store.sqlfile import load_migrations
from tests.conformance.helpers import event, new_run
from tests.conftest import PG_URL, database_url_for
from tests.pg_helpers import schema_of

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_url(tmp_path: Path) -> str:
    return database_url_for("postgres", tmp_path)


def test_stepwell_parameters_are_read_from_the_url_and_hidden_from_libpq() -> None:
    url = "postgresql://u@h/db?sslmode=disable&stepwell_pool_max=2&stepwell_listen=off&stepwell_statement_timeout=5s"
    conninfo, options = split_url(url + "&stepwell_idle_in_transaction_timeout=off&stepwell_pool_timeout=1.5")
    assert conninfo == "postgresql://u@h/db?sslmode=disable"
    assert options == PostgresOptions(
        pool_max=2, pool_timeout=1.5, statement_timeout=timedelta(seconds=5), idle_in_transaction_timeout=None,
        listen=False,
    )  # fmt: skip
    with pytest.raises(ConfigurationError, match=r"stepwell_pool_size.*accepted: stepwell_idle_in_transaction"):
        split_url("postgresql://h/db?stepwell_pool_size=3")
    with pytest.raises(ConfigurationError, match="stepwell_listen"):
        split_url("postgresql://h/db?stepwell_listen=maybe")


def test_pooled_sessions_carry_the_timeouts_and_utc(pg_url: str) -> None:
    store = PostgresStore(pg_url + "&stepwell_statement_timeout=1500ms&stepwell_pool_max=2")
    try:
        with store._open_pool().connection() as conn:
            settings = conn.execute(
                "SELECT current_setting('statement_timeout'), current_setting('idle_in_transaction_session_timeout'),"
                " current_setting('TimeZone'), current_setting('application_name')"
            ).fetchone()
        assert settings == ("1500ms", "1min", "UTC", "stepwell")
        assert store._pool.max_size == 2
    finally:
        store.close()


def test_without_a_clock_the_database_clock_rules(pg_url: str) -> None:
    store = open_store(pg_url, SystemClock())  # production: not virtual, so database time
    try:
        store.migrate()
        assert isinstance(store, PostgresStore) and store.clock is None
        now = store.now()
        store.append_events([event(at=now, runs=(new_run(at=now),))])
        [claimed] = store.claim_runs(worker_id="w", limit=1, lease=timedelta(seconds=30))
        assert timedelta(seconds=29) < claimed.lease.expires_at - now < timedelta(seconds=40)
        assert claimed.claimed_at >= now
    finally:
        store.close()


def test_an_unreachable_server_is_store_unavailable_not_a_driver_error() -> None:
    store = PostgresStore("postgresql://postgres@127.0.0.1:1/test?connect_timeout=1&stepwell_pool_timeout=0.5")
    try:
        with pytest.raises(StoreUnavailable, match="claim_runs: the database is unavailable"):
            store.claim_runs(worker_id="w", limit=1, lease=timedelta(seconds=30))
    finally:
        store.close()


def test_several_stores_migrating_at_once_apply_each_migration_once(pg_url: str) -> None:
    stores = [PostgresStore(pg_url) for _ in range(4)]
    applied: list[list[int]] = []
    barrier = threading.Barrier(len(stores))

    def migrate(store: PostgresStore) -> None:
        barrier.wait()
        applied.append(store.migrate())

    threads = [threading.Thread(target=migrate, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for store in stores:
        store.close()
    every = [version for version, _, _ in load_migrations("stepwell.store.postgres")]
    assert sorted(applied, key=len) == [[], [], [], every]


def _schema(url: str) -> list[tuple[str, ...]]:
    """Columns, indexes and recorded migrations of the URL's schema, for comparing two schemas."""
    schema = schema_of(url)
    with psycopg.connect(PG_URL) as conn:
        columns = conn.execute(
            "SELECT table_name, column_name, data_type, is_nullable, coalesce(column_default, '')"
            " FROM information_schema.columns WHERE table_schema = %s ORDER BY 1, 2",
            [schema],
        ).fetchall()
        indexes = conn.execute(
            "SELECT tablename, indexname, replace(indexdef, %s, 'S') FROM pg_indexes WHERE schemaname = %s"
            " ORDER BY 1, 2",
            [schema, schema],
        ).fetchall()
        versions = conn.execute(f'SELECT version::text, name FROM "{schema}".stepwell_migrations ORDER BY 1').fetchall()
    return [*columns, *indexes, *versions]


def test_print_sql_builds_the_same_schema_that_migrate_does(tmp_path: Path, pg_url: str) -> None:
    other = database_url_for("postgres", tmp_path)
    script = CliRunner().invoke(main, ["migrate", "--print-sql", "--database-url", other])
    assert script.exit_code == 0, script.output
    assert script.output == migration_sql(other)
    with psycopg.connect(other) as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = %s", [schema_of(other)]).fetchone() == (
            0,
        ), "printing applies nothing"
        conn.execute(script.output.encode())
    migrated = CliRunner().invoke(main, ["migrate", "--database-url", pg_url])
    assert migrated.exit_code == 0, migrated.output
    assert _schema(other) == _schema(pg_url)
    store = PostgresStore(other)
    try:
        assert store.migrate() == [], "a schema applied from the printed SQL is up to date for `stepwell migrate`"
    finally:
        store.close()
