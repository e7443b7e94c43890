"""Local lease deadlines: when a worker must stop trusting the leases it holds.

The store refuses every write under a lease that another worker took over (fencing), but a
refusal arrives only at the write: a worker paused past its lease (SIGSTOP, a long GC, a stalled
VM) would otherwise start a run it claimed ahead, or call the next step's function, and learn only
afterwards that the run is someone else's. So the worker keeps, per held run, a deadline on a
monotonic clock: the start of the last successful claim or renewal, plus the lease, minus a
margin for clock drift and the time the renewal itself took to commit. Past it, no user code of
that run starts. The deadline is measured in real time because the heartbeat renews in real time.

What remains is a pause that falls between the check and the call; `docs/guarantees.md` says so.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from datetime import timedelta

from stepwell.clock import SystemClock

MARGIN_FRACTION = 1 / 6  # of the lease: with renewals every lease/3, a live run keeps >= lease/2 ahead


class LeaseDeadlines:
    """Thread-safe: the heartbeat thread renews and reports losses, the event loop and the user
    threads check."""

    def __init__(self, lease: timedelta, *, monotonic: Callable[[], float] | None = None) -> None:
        self.lease = lease.total_seconds()
        self.margin = self.lease * MARGIN_FRACTION
        self.monotonic = monotonic or SystemClock().monotonic
        self._deadlines: dict[str, float] = {}
        self._lock = threading.Lock()

    def now(self) -> float:
        """Read before a claim or a renewal starts: the lease cannot have begun earlier than this."""
        return self.monotonic()

    def granted(self, run_ids: Iterable[str], since: float) -> None:
        """The store granted or extended these leases in a call that started at `since`."""
        deadline = since + self.lease - self.margin
        with self._lock:
            for run_id in run_ids:
                self._deadlines[run_id] = deadline

    def renewed(self, run_ids: Iterable[str], since: float) -> None:
        """Like `granted`, but only for runs still tracked: a run settled meanwhile stays forgotten,
        and a run already known lost, or whose deadline has passed, is never revived."""
        deadline = since + self.lease - self.margin
        now = self.monotonic()
        with self._lock:
            for run_id in run_ids:
                current = self._deadlines.get(run_id, -1.0)
                if current < 0:
                    continue
                # A deadline that passed is final, even if a renewal that was stuck meanwhile (the
                # database away) succeeds afterwards: the attempt may already have stopped trusting
                # the lease, and a user-code call must never depend on which thread won that race.
                self._deadlines[run_id] = deadline if current > now else -1.0

    def lost(self, run_ids: Iterable[str]) -> None:
        """The store said these leases are gone: expired at once, for good."""
        with self._lock:
            for run_id in run_ids:
                if run_id in self._deadlines:
                    self._deadlines[run_id] = -1.0

    def forget(self, run_id: str) -> None:
        with self._lock:
            self._deadlines.pop(run_id, None)

    def alive(self, run_id: str) -> bool:
        """True while this worker may still start user code of `run_id`. Unknown runs are not
        tracked by this worker (an inline test environment, say) and count as alive."""
        with self._lock:
            deadline = self._deadlines.get(run_id)
        return deadline is None or self.monotonic() < deadline

    def remaining(self, run_id: str) -> float | None:
        """Seconds left before the deadline (negative once past); None for an untracked run."""
        with self._lock:
            deadline = self._deadlines.get(run_id)
        return None if deadline is None else deadline - self.monotonic()
