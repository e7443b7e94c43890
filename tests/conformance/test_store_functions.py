"""Runs stepwell.testing.conformance.functions on every backend of this repository (fixtures in tests/conftest.py)."""

from stepwell.testing.conformance.functions import *  # noqa: F403
