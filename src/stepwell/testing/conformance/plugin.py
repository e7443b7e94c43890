"""Pytest fixtures of the conformance suite: `clock` and `store`, built on the backend's `store_factory`."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from stepwell.clock import VirtualClock
from stepwell.store.base import Store
from stepwell.testing.conformance.helpers import StoreFactory


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(datetime(2030, 1, 1, tzinfo=UTC))


@pytest.fixture
def store(store_factory: StoreFactory) -> Iterator[Store]:
    store = store_factory()
    store.migrate()
    yield store
    store.close()
