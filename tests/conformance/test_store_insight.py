"""Runs stepwell.testing.conformance.insight on every backend of this repository (fixtures in tests/conftest.py)."""

from stepwell.testing.conformance.insight import *  # noqa: F403
