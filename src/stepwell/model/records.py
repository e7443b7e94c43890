"""What the store hands back: runs, steps, events, dead letters. Frozen values."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SLEEPING = "sleeping"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})


class StepStatus(StrEnum):
    COMPLETED = "completed"  # output memoized
    FAILED = "failed"  # final error memoized; replay raises StepError
    ERRORED = "errored"  # an attempt raised; runs again on the next attempt
    SLEEPING = "sleeping"  # a sleep that has not yet ended
    WAITING = "waiting"  # waiting for an event, a child run, or a fan-out's children


class StepKind(StrEnum):
    RUN = "run"
    SLEEP = "sleep"
    WAIT = "wait"  # wait_for_event
    INVOKE = "invoke"
    FAN_OUT = "fan_out"
    SEND = "send"


class Disposition(StrEnum):
    """Why an accepted event started what it started (or nothing)."""

    STARTED = "started"
    RESUMED = "resumed"  # started no run, but resumed runs waiting for it
    CANCELLED = "cancelled"  # started and resumed nothing, but cancelled runs through their cancel_on
    DEDUPLICATED = "deduplicated"  # the function's idempotency key was seen within 24 h
    RATE_LIMITED = "rate_limited"
    DEBOUNCED = "debounced"  # a later event took its place in the pending run
    BATCHED = "batched"  # added to another event's batch run
    NO_MATCH = "no_match"


class FailureReason(StrEnum):
    RETRIES_EXHAUSTED = "retries_exhausted"
    NON_RETRIABLE = "non_retriable"
    LEASE_LOST = "lease_lost"
    TIMED_OUT = "timed_out"


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """A stored error: its type, message and traceback, truncated to sane sizes."""

    type: str
    message: str
    traceback: str = ""
    step: str | None = None

    def __str__(self) -> str:
        where = f" in step {self.step!r}" if self.step else ""
        return f"{self.type}{where}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "message": self.message, "traceback": self.traceback, "step": self.step}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> ErrorInfo | None:
        if not data:
            return None
        return cls(data["type"], data["message"], data.get("traceback", ""), data.get("step"))


@dataclass(frozen=True, slots=True)
class Step:
    id: str
    kind: StepKind
    status: StepStatus
    attempts: int
    output: Any = None
    error: ErrorInfo | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    wake_at: datetime | None = None
    position: int = 0  # order of first call within the run: replays must call steps in this order


@dataclass(frozen=True, slots=True)
class Event:
    """An event as user code sees it (`ctx.event`)."""

    id: str | None
    name: str
    data: Any
    ts: datetime


@dataclass(frozen=True, slots=True)
class Run:
    id: str
    function: str
    status: RunStatus
    attempt: int
    max_attempts: int
    event_id: str | None
    parent_id: str | None
    created_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    available_at: datetime | None = None
    output: Any = None
    error: ErrorInfo | None = None
    replay_of: str | None = None
    steps: tuple[Step, ...] = ()
    errors: tuple[ErrorInfo, ...] = ()
    ordering_key: str | None = None
    waiting_reason: str | None = None  # why it has not started (or resumed) yet; read by get_run

    def step(self, step_id: str) -> Step:
        """The step with this id; KeyError names the ids there are."""
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(f"run {self.id} has no step {step_id!r}; it has {[s.id for s in self.steps]}")


@dataclass(frozen=True, slots=True)
class EventRecord:
    id: str
    name: str
    data: Any
    ts: datetime
    received_at: datetime
    disposition: Disposition
    run_ids: tuple[str, ...] = field(default=())
    skipped: tuple[tuple[str, str, str | None], ...] = ()  # (function, reason, run it went to) per function skipped


@dataclass(frozen=True, slots=True)
class FanOutCounts:
    """Where a fan-out's children stand, counted from their own rows."""

    total: int | None  # None until every child has been created
    queued: int = 0
    running: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    done: bool = False

    @property
    def created(self) -> int:
        return self.queued + self.running + self.completed + self.failed + self.cancelled

    @property
    def finished(self) -> int:
        return self.completed + self.failed + self.cancelled


@dataclass(frozen=True, slots=True)
class ChildResult:
    index: int
    run_id: str
    status: RunStatus
    output: Any = None
    error: ErrorInfo | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    run_id: str
    function: str
    error: ErrorInfo
    reason: FailureReason
    failed_at: datetime
    attempts: int
    redrive_count: int
    ordering_key: str | None = None
    key_policy: str | None = None  # skipped: its key moved on past it; parked: its key waits for it
