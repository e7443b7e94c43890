"""The maintenance verbs' conformance tests (stepwell.testing.conformance), plus applied_migrations."""

from __future__ import annotations

from pathlib import Path

from stepwell.app import open_store
from stepwell.clock import VirtualClock
from stepwell.store.base import Store
from stepwell.testing.conformance.maintenance import *  # noqa: F403
from tests.conftest import database_url_for


def test_applied_migrations_lists_the_schema_versions_and_creates_nothing_on_an_empty_database(
    store: Store, backend: str, tmp_path: Path, clock: VirtualClock
) -> None:
    versions = store.applied_migrations()
    assert versions and versions == sorted(versions) and store.migrate() == []
    empty = open_store(database_url_for(backend, tmp_path / "empty"), clock)
    try:
        assert empty.applied_migrations() == []
        assert empty.applied_migrations() == [], "asking created no schema"
    finally:
        empty.close()
