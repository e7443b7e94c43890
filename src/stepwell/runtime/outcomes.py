"""What one attempt of a run came to, as a value; `decide` turns it into a store settlement."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import assert_never

from stepwell.model.records import ErrorInfo, FailureReason
from stepwell.model.retry import RetryPolicy
from stepwell.store.base import ClaimedRun, Complete, Fail, Release, Retry, Settlement, Suspend


@dataclass(frozen=True, slots=True)
class Completed:
    output: bytes


@dataclass(frozen=True, slots=True)
class Suspended:
    until: datetime | None
    waiting: bool = False


@dataclass(frozen=True, slots=True)
class Failed:
    error: ErrorInfo
    retriable: bool = True
    retry_after: timedelta | None = None


@dataclass(frozen=True, slots=True)
class Interrupted:
    """The store failed under the attempt (a dropped connection, a restart): not the function's failure.

    The run is given back without counting an attempt; the interrupted step runs again.
    """

    error: ErrorInfo


@dataclass(frozen=True, slots=True)
class LeaseGone:
    """The lease was lost mid-attempt: commit nothing, another worker owns the run now."""


Outcome = Completed | Suspended | Failed | Interrupted | LeaseGone


def decide(
    outcome: Outcome, claimed: ClaimedRun, policy: RetryPolicy, rand: random.Random | None = None
) -> Settlement | None:
    lease = claimed.lease
    match outcome:
        case Completed(output):
            return Complete(lease, output)
        case Suspended(until, waiting):
            return Suspend(lease, until, waiting)
        case Failed(error, True, retry_after) if claimed.attempt < claimed.max_attempts:
            delay = retry_after if retry_after is not None else policy.backoff.delay(claimed.attempt, rand)
            return Retry(lease, error, delay)
        case Failed(error, retriable, _):
            reason = FailureReason.RETRIES_EXHAUSTED if retriable else FailureReason.NON_RETRIABLE
            return Fail(lease, error, reason)
        case Interrupted():
            return Release(lease)
        case LeaseGone():
            return None
        case _:
            assert_never(outcome)
