"""Runs stepwell.testing.conformance.waiting on every backend of this repository (fixtures in tests/conftest.py)."""

from stepwell.testing.conformance.waiting import *  # noqa: F403
