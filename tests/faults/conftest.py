"""Fixtures for the fault tests: the effect ledger, the history, worker processes, a client app."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import stepwell
from tests.faults.faults_app import build_app
from tests.faults.history import History
from tests.faults.procs import FaultWorkers


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.jsonl"


@pytest.fixture
def history(tmp_path: Path) -> History:
    return History(tmp_path / "history.jsonl")


@pytest.fixture
def client(database_url: str) -> Iterator[stepwell.App]:
    app = build_app(database_url)
    app.store  # create the schema before any worker starts  # noqa: B018
    yield app
    app.close()


@pytest.fixture
def fault_workers(database_url: str, ledger_path: Path, tmp_path: Path) -> Iterator[FaultWorkers]:
    started = FaultWorkers(database_url, ledger_path, tmp_path)
    yield started
    started.stop_all()
    print(started.report())
