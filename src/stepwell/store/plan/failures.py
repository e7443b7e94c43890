"""What the store decides about runs nobody settled: expired leases and whole-run timeouts.

One wording for the errors the store writes itself, and one rule for a rescued run: it is tried
again while it has attempts left, and dead-lettered (lease_lost) when the lost attempt was its last.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from stepwell.model.records import ErrorInfo

RUN_TIMED_OUT = ErrorInfo("RunTimeout", "the run did not finish within its timeout")


def lease_expired(attempt: int) -> ErrorInfo:
    """The error of an attempt whose worker stopped renewing its lease."""
    return ErrorInfo(
        "LeaseExpired", f"the worker running attempt {attempt} stopped renewing its lease (crashed or hung)"
    )


@dataclass(frozen=True, slots=True)
class ExpiredLease:
    """A running run whose lease expired, as the store read it (locked)."""

    run_id: str
    token: str
    attempt: int
    max_attempts: int


@dataclass(frozen=True, slots=True)
class Rescued:
    """One rescued run: its lost attempt's error, and whether it is dead-lettered (out of attempts)."""

    lease: ExpiredLease
    error: ErrorInfo
    dead: bool


def plan_rescue(expired: Sequence[ExpiredLease]) -> list[Rescued]:
    """The change-set of a rescue, in the order read."""
    return [Rescued(lease, lease_expired(lease.attempt), lease.attempt >= lease.max_attempts) for lease in expired]
