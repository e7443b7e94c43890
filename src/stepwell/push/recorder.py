"""A store-less step recorder: the web app's stand-in for the Store under the step API.

The step API (`runtime/steps.py`) talks to a Store through a handful of verbs. In push mode the
web app has no database: `StepRecorder` implements exactly those verbs by appending an op to a
list (what the dispatcher will write under the real lease) and answering what the store would
have answered, from the request. When a verb makes a step's result new and the function would go
past it (a completed step, a timed-out wait), it raises `CheckpointReached`, which unwinds user
code like a suspension: the dispatcher stores the result, then asks again. Reads the step API
makes come from the request: the counts of waiting fan-outs always, the children of a finished
fan-out (`FanOut.results()`, `children()`, `failures()`) once asked for: the first read of a step's
children raises `ChildrenNeeded`, the dispatcher stores the ops, reads every child of that step
and asks again with them, and the replay reads them from the request as a pulled run reads the store.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stepwell.errors import ConfigurationError
from stepwell.model.event import EventIn
from stepwell.model.jsonvalue import decode
from stepwell.model.records import ChildResult, ErrorInfo, FanOutCounts, Step, StepStatus
from stepwell.push.protocol import (
    CreateChildren,
    Op,
    OpenFanOut,
    PushRequest,
    RecordStep,
    RegisterWait,
    SealFanOut,
    SendEvents,
    StartChild,
    TimeOutStep,
)
from stepwell.runtime.engine import Engine
from stepwell.runtime.steps import SuspendRun
from stepwell.store.base import AcceptedEvent, Lease, NewChild, NewWait, StepWrite


class CheckpointReached(SuspendRun):
    """Internal: a step's result is new; stop here so that it is stored before the function goes on.

    A SuspendRun, so that the executor maps it to an outcome without formatting a traceback (a
    checkpoint ends most requests); the endpoint answers `checkpoint` whatever that outcome says."""

    def __init__(self) -> None:
        super().__init__(None)


class ChildrenNeeded(SuspendRun):
    """Internal: the function reads a finished fan-out's children, which the request does not carry yet."""

    def __init__(self) -> None:
        super().__init__(None)


class StepRecorder:
    """The verbs of the Store protocol that the step API calls, recorded instead of written."""

    def __init__(self, request: PushRequest) -> None:
        self.now = request.claimed.claimed_at
        self.fan_outs = dict(request.fan_outs)
        self.children = request.children
        self.ops: list[Op] = []
        self.checkpointed = False
        self.read: str | None = None  # a fan-out step whose children the function asked for

    def _checkpoint(self) -> CheckpointReached:
        self.checkpointed = True
        return CheckpointReached()

    def _step(self, write: StepWrite, wake_at: datetime | None) -> Step:
        return Step(
            write.step_id,
            write.kind,
            write.status,
            attempts=1,
            output=decode(write.output),
            error=write.error,
            wake_at=wake_at,
            position=write.position,
        )

    def _wake_at(self, write: StepWrite) -> datetime | None:
        if write.wake_at is not None:
            return write.wake_at
        return None if write.sleep_for is None else self.now + write.sleep_for

    def record_step(self, lease: Lease, step: StepWrite, *, now: datetime | None = None) -> Step:
        self.ops.append(RecordStep(step))
        if step.status == StepStatus.COMPLETED:
            raise self._checkpoint()
        return self._step(step, self._wake_at(step))

    def register_wait(self, lease: Lease, step: StepWrite, wait: NewWait, *, now: datetime | None = None) -> Step:
        self.ops.append(RegisterWait(step, wait))
        return self._step(step, None if wait.timeout is None else self.now + wait.timeout)

    def start_child(self, lease: Lease, step: StepWrite, child: NewChild, *, now: datetime | None = None) -> Step:
        self.ops.append(StartChild(step, child))
        return self._step(step, self._wake_at(step))

    def time_out_step(
        self, lease: Lease, step_id: str, *, error: ErrorInfo | None, now: datetime | None = None
    ) -> Step:
        self.ops.append(TimeOutStep(step_id, error))
        raise self._checkpoint()

    def open_fan_out(
        self, lease: Lease, step: StepWrite, *, function: str, tolerate: float, now: datetime | None = None
    ) -> Step:
        self.ops.append(OpenFanOut(step, function, tolerate))
        self.fan_outs[step.step_id] = FanOutCounts(total=None)
        return self._step(step, None)

    def fan_out_counts(self, parent_id: str, step_id: str) -> FanOutCounts:
        return self.fan_outs.get(step_id, FanOutCounts(total=None))

    def create_children(
        self, lease: Lease, step_id: str, children: Sequence[NewChild], *, now: datetime | None = None
    ) -> int:
        self.ops.append(CreateChildren(step_id, tuple(children)))
        return len(children)

    def seal_fan_out(self, lease: Lease, step_id: str, total: int, *, now: datetime | None = None) -> FanOutCounts:
        self.ops.append(SealFanOut(step_id, total))
        return FanOutCounts(total=total, queued=total, done=total == 0)

    def fan_out_results(self, parent_id: str, step_id: str, *, after: int, limit: int) -> list[ChildResult]:
        children = self.children.get(step_id)
        if children is None:
            self.read = step_id
            raise ChildrenNeeded()
        start = bisect.bisect_right(children, after, key=lambda child: child.index)
        return list(children[start : start + limit])


@dataclass(frozen=True, slots=True)
class RecordingEngine(Engine):
    """An Engine whose store is a StepRecorder: `send_event` is recorded too, and stored by the dispatcher."""

    recorder: StepRecorder | None = None

    def send(self, events: Sequence[EventIn], *, connection: object | None = None) -> list[AcceptedEvent]:
        assert self.recorder is not None
        recorded: list[tuple[str, str, Any]] = []
        for event in events:
            if event.id is None:
                raise ConfigurationError("a pushed function sends events only through ctx.step.send_event")
            recorded.append((event.id, event.name, event.data))
        self.recorder.ops.append(SendEvents(tuple(recorded)))
        return [AcceptedEvent(event_id, duplicate=False, run_ids=()) for event_id, _, _ in recorded]
