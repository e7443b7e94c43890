"""Shared fixtures. `store` is parametrized over every backend; PostgreSQL must be reachable (never skipped)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from stepwell.app import App, open_store
from stepwell.clock import VirtualClock
from stepwell.store.base import Store
from stepwell.testing import TestEnv
from stepwell.testing.conformance.helpers import StoreFactory

# `store` (from store_factory) for every test; a skipped test fails the run
pytest_plugins = ["stepwell.testing.conformance.plugin", "tests.noskip"]

BACKENDS = [b for b in os.environ.get("STEPWELL_TEST_BACKENDS", "sqlite").split(",") if b]
PG_URL = os.environ.get("STEPWELL_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(datetime(2030, 1, 1, tzinfo=UTC))


def database_url_for(backend: str, tmp_path: Path) -> str:
    """A fresh, empty database for one test, on `backend`."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'stepwell.db'}"
    if backend in ("postgres", "postgresql"):
        return pg_schemas.create()
    raise ValueError(f"unknown backend {backend!r}")


class _PostgresSchemas:
    """One empty schema per test in the test database, reached through the URL's search_path.

    Much faster than CREATE DATABASE, and safe beside other test runs on the same server. Schemas
    are dropped when the test ends. An unreachable server is an error here, never a skip.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.created: list[str] = []
        self._admin: psycopg.Connection[tuple[object, ...]] | None = None

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        """The cached admin session, reconnected when the server dropped it (a restart, say)."""
        if self._admin is not None and not self._admin.closed:
            try:
                self._admin.execute("SELECT 1")
                return self._admin
            except psycopg.OperationalError:
                self._admin.close()
        self._admin = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
        return self._admin

    def create(self, *, per_test: bool = True) -> str:
        """A URL to a new empty schema; dropped at the end of the test unless `per_test=False` (then `drop` it)."""
        schema = f"stepwell_test_{uuid.uuid4().hex[:16]}"
        self.admin().execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        if per_test:
            self.created.append(schema)
        separator = "&" if "?" in self.url else "?"
        return f"{self.url}{separator}options=-csearch_path%3D{schema}"

    def drop_created(self) -> None:
        schemas, self.created = self.created, []
        self.drop(schemas)

    def drop(self, schemas: list[str]) -> None:
        conn = self.admin()
        conn.execute("SET lock_timeout = '10s'")
        for schema in schemas:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


pg_schemas = _PostgresSchemas(PG_URL)


@pytest.fixture(autouse=True)
def _drop_test_schemas() -> Iterator[None]:
    """Runs after every other fixture of the test is torn down (stores closed): drop its schemas."""
    yield
    if pg_schemas.created:
        pg_schemas.drop_created()


@pytest.fixture
def database_url(backend: str, tmp_path: Path) -> str:
    return database_url_for(backend, tmp_path)


def make_store(backend: str, tmp_path: Path, clock: VirtualClock) -> Store:
    store = open_store(database_url_for(backend, tmp_path), clock)
    store.migrate()
    return store


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_factory(database_url: str, clock: VirtualClock) -> StoreFactory:
    """The one fixture the conformance suite needs: another store on this test's fresh database.
    The suite's plugin builds `store` (migrated, closed after the test) from it."""
    return lambda: open_store(database_url, clock)


@pytest.fixture
def test_env(backend: str, tmp_path: Path) -> Callable[..., TestEnv]:
    """`with test_env(app) as env:` — stepwell.testing.TestEnv on this test's backend."""

    def make(app: App, **kwargs: object) -> TestEnv:
        return TestEnv(app, database_url=database_url_for(backend, tmp_path), **kwargs)  # type: ignore[arg-type]

    return make


EnvFactory = Callable[..., TestEnv]
