"""Runs stepwell.testing.conformance.cron on every backend of this repository (fixtures in tests/conftest.py)."""

from stepwell.testing.conformance.cron import *  # noqa: F403
