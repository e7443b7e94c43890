"""Runs stepwell.testing.conformance.flow_concurrency on every backend here (fixtures: tests/conftest.py)."""

from stepwell.testing.conformance.flow_concurrency import *  # noqa: F403
