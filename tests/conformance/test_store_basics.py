"""Runs stepwell.testing.conformance.basics on every backend of this repository (fixtures in tests/conftest.py)."""

from stepwell.testing.conformance.basics import *  # noqa: F403
