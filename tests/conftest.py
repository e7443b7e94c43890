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


def make_store(backend: str, tmp_path: Path, clock: VirtualClock) -> Store:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'stepwell.db'}"
    else:
        raise ValueError(f"unknown backend {backend!r}")
    store = open_store(url, clock)
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
