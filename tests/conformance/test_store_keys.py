"""Runs stepwell.testing.conformance.keys on every backend of this repository (fixtures in tests/conftest.py)."""

from stepwell.testing.conformance.keys import *  # noqa: F403
