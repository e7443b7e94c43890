"""Shared fixtures. `store` is parametrized over every backend; PostgreSQL must be reachable (never skipped)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from stepwell.app import open_store
from stepwell.clock import VirtualClock
from stepwell.store.base import Store

BACKENDS = [b for b in os.environ.get("STEPWELL_TEST_BACKENDS", "sqlite").split(",") if b]


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(datetime(2030, 1, 1, tzinfo=UTC))


def database_url_for(backend: str, tmp_path: Path) -> str:
    """A fresh, empty database for one test, on `backend`."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'stepwell.db'}"
    raise ValueError(f"unknown backend {backend!r}")


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
def store(backend: str, tmp_path: Path, clock: VirtualClock) -> Iterator[Store]:
    store = make_store(backend, tmp_path, clock)
    yield store
    store.close()
