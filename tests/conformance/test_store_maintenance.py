"""Runs stepwell.testing.conformance.maintenance on every backend of this repository (fixtures in tests/conftest.py)."""

from stepwell.testing.conformance.maintenance import *  # noqa: F403
