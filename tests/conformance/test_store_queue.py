"""Runs stepwell.testing.conformance.queue on every backend of this repository (fixtures in tests/conftest.py)."""

from stepwell.testing.conformance.queue import *  # noqa: F403
