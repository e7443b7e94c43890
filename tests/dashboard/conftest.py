"""Fixtures of the dashboard tests: a served app on the test's backend, and one headless chromium per module."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import stepwell
from stepwell.http import ServerThread
from tests.dashboard.helpers import CHROMIUM, CHROMIUM_ARGS, make_app, worker_thread

ARTIFACTS = Path(__file__).resolve().parents[2] / ".artifacts" / "dashboard"


@dataclass
class Served:
    app: stepwell.App
    url: str
    tokens: dict[str, str]  # scope -> a token holding only that scope


@pytest.fixture
def served(database_url: str) -> Iterator[Served]:
    """The dashboard (with keys) and a worker, on the test's backend."""
    app = make_app(database_url)
    app.register()
    tokens = {scope: app.create_api_key(f"{scope} key", [scope])[1] for scope in ("read", "operate")}
    with worker_thread(app), ServerThread(app, port=0, auth=True) as server:
        yield Served(app, server.url, tokens)
    app.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def artifacts(backend: str) -> Path:
    folder = ARTIFACTS / backend
    folder.mkdir(parents=True, exist_ok=True)
    return folder
