"""Runs stepwell.testing.conformance.reads on every backend of this repository (fixtures in tests/conftest.py)."""

from stepwell.testing.conformance.reads import *  # noqa: F403
