"""The Store protocol: every persistence verb the engine needs, each one transaction.

The protocol is synchronous on purpose: both drivers (sqlite3, psycopg) are fastest in their
blocking form, the public API is mostly called from plain threads, and the async runtime
reaches the store through one executor. No sync/async twins.

Times passed as `now` pin the clock for tests; when `now` is None the store uses its own
authority (the database's clock on PostgreSQL, the injected clock on SQLite).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from stepwell.model.records import (
    DeadLetter,
    ErrorInfo,
    Event,
    EventRecord,
    FailureReason,
    Run,
    RunStatus,
    Step,
    StepKind,
    StepStatus,
)


@dataclass(frozen=True, slots=True)
class NewRun:
    id: str
    function: str
    max_attempts: int
    on_failure: str | None = None
    input: bytes | None = None  # JSON; for runs without an event (direct enqueue, failure handlers)
    input_name: str | None = None  # the event name user code sees for such runs
    parent_id: str | None = None
    replay_of: str | None = None
    priority: int = 0


@dataclass(frozen=True, slots=True)
class NewEvent:
    id: str
    name: str
    data: bytes  # JSON
    ts: datetime | None
    runs: tuple[NewRun, ...]  # the runs this event starts, decided by the dispatcher


@dataclass(frozen=True, slots=True)
class AcceptedEvent:
    id: str
    duplicate: bool  # an event with this id was already stored: nothing new was written
    run_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Lease:
    """A claim on a run; every write under it is checked against `token` (fencing)."""

    run_id: str
    token: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class ClaimedRun:
    lease: Lease
    function: str
    attempt: int
    max_attempts: int
    event: Event
    claimed_at: datetime  # the store's now at claim: sleeps that ended by then are over
    steps: tuple[Step, ...] = ()

    @property
    def run_id(self) -> str:
        return self.lease.run_id


@dataclass(frozen=True, slots=True)
class StepWrite:
    """A step's new state, written under the run's lease."""

    step_id: str
    position: int
    kind: StepKind
    status: StepStatus
    output: bytes | None = None
    error: ErrorInfo | None = None
    wake_at: datetime | None = None
    sleep_for: timedelta | None = None  # a sleep measured from the store's now; resolved into wake_at


# Settling a claimed run: one of these per run, many per transaction.


@dataclass(frozen=True, slots=True)
class Complete:
    lease: Lease
    output: bytes


@dataclass(frozen=True, slots=True)
class Retry:
    lease: Lease
    error: ErrorInfo
    delay: timedelta


@dataclass(frozen=True, slots=True)
class Suspend:
    lease: Lease
    until: datetime


@dataclass(frozen=True, slots=True)
class Fail:
    lease: Lease
    error: ErrorInfo
    reason: FailureReason


Settlement = Complete | Retry | Suspend | Fail


@dataclass(frozen=True, slots=True)
class RunFilter:
    event_id: str | None = None
    function: str | None = None
    status: RunStatus | None = None
    parent_id: str | None = None
    limit: int = 100


@dataclass(frozen=True, slots=True)
class Retention:
    completed: timedelta = timedelta(days=7)
    dead_letters: timedelta = timedelta(days=30)
    batch: int = 1000


@dataclass(frozen=True, slots=True)
class PurgeCounts:
    runs: int = 0
    events: int = 0


@dataclass(frozen=True, slots=True)
class RedriveRequest:
    run_ids: Sequence[str] = ()
    function: str | None = None
    since: datetime | None = None
    limit: int = 10_000


@dataclass(frozen=True, slots=True)
class QueueStats:
    ready: int
    scheduled: int
    running: int
    dead_letters: int
    next_due: datetime | None = field(default=None)


class Store(Protocol):
    """Every method is one transaction, safe to call from any thread."""

    def migrate(self) -> list[int]:
        """Create or upgrade the schema; safe when several processes start at once. Returns applied versions."""
        ...

    def close(self) -> None: ...

    def now(self) -> datetime:
        """The store's authority for time."""
        ...

    def append_events(self, events: Sequence[NewEvent], *, now: datetime | None = None) -> list[AcceptedEvent]:
        """Store events and the runs they start, all in one transaction; a known event id is a no-op."""
        ...

    def create_runs(self, runs: Sequence[NewRun], *, now: datetime | None = None) -> None:
        """Queue runs that no event started (direct enqueue, replay)."""
        ...

    def claim_runs(
        self, *, worker_id: str, limit: int, lease: timedelta, now: datetime | None = None
    ) -> list[ClaimedRun]:
        """Lease up to `limit` ready runs, with their event and memoized steps."""
        ...

    def extend_leases(self, leases: Sequence[Lease], *, lease: timedelta, now: datetime | None = None) -> list[Lease]:
        """Heartbeat: push the expiry of each lease still held; returns the renewed leases (lost ones are absent)."""
        ...

    def record_step(self, lease: Lease, step: StepWrite, *, now: datetime | None = None) -> Step:
        """Write a step's state under the lease; raises LeaseLost if the lease is gone."""
        ...

    def settle_runs(self, settlements: Sequence[Settlement], *, now: datetime | None = None) -> list[str]:
        """Apply outcomes of many runs in one transaction; returns the run ids whose lease was lost."""
        ...

    def release_runs(self, leases: Sequence[Lease], *, now: datetime | None = None) -> int:
        """Give leases back at once (graceful shutdown) without counting an attempt."""
        ...

    def rescue_expired_leases(self, *, now: datetime | None = None, limit: int = 1000) -> int:
        """Requeue (or dead-letter, when out of attempts) runs whose lease expired."""
        ...

    def cancel_runs(self, run_ids: Sequence[str], *, now: datetime | None = None) -> list[str]:
        """Cancel runs not yet terminal; returns those cancelled."""
        ...

    def redrive(self, request: RedriveRequest, *, now: datetime | None = None) -> list[str]:
        """Queue dead-lettered runs again from their failed step; an entry already redriven is skipped."""
        ...

    def get_run(self, run_id: str) -> Run | None: ...

    def list_runs(self, query: RunFilter) -> list[Run]: ...

    def get_run_input(self, run_id: str) -> tuple[str, bytes] | None:
        """The (event name, JSON data) a run started from; for replays."""
        ...

    def get_event(self, event_id: str) -> EventRecord | None: ...

    def list_dead_letters(self, *, function: str | None = None, limit: int = 100) -> list[DeadLetter]: ...

    def purge(self, retention: Retention, *, now: datetime | None = None) -> PurgeCounts:
        """Delete terminal runs (and orphaned events) older than their retention, in batches."""
        ...

    def queue_stats(self, *, now: datetime | None = None) -> QueueStats: ...

    def subscribe(self, on_work: Callable[[], None]) -> Callable[[], None] | None:
        """Call `on_work` (from any thread) when new work may be ready: a hint, never a guarantee.

        Returns a function that unsubscribes, or None when the store has no push notifications
        (workers then rely on polling alone).
        """
        ...


def error_json(error: ErrorInfo | None) -> dict[str, Any] | None:
    return None if error is None else error.to_json()
