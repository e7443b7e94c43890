"""Fixtures for the real-process tests: worker processes, the side-effect file, a client app."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import stepwell
from tests.integration.helpers import Effects, Workers
from tests.integration.integration_app import build_app


@pytest.fixture
def effects(tmp_path: Path) -> Effects:
    return Effects(tmp_path / "effects.log")


@pytest.fixture
def client(database_url: str) -> Iterator[stepwell.App]:
    """The test's own App on the workers' database: it enqueues runs and reads them, it runs nothing."""
    app = build_app(database_url)
    app.store  # create the schema before any worker starts  # noqa: B018
    yield app
    app.close()


@pytest.fixture
def workers(database_url: str, effects: Effects, tmp_path: Path) -> Iterator[Workers]:
    started = Workers(database_url, effects, tmp_path)
    yield started
    started.stop_all()
    print(started.report())  # shown by pytest when the test failed
