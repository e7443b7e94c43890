"""Runs stepwell.testing.conformance.events on every backend of this repository (fixtures in tests/conftest.py)."""

from stepwell.testing.conformance.events import *  # noqa: F403
