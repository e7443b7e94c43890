"""Writing a response's ops under the run's lease: each op is the store verb it is named after.

Every verb is fenced by the lease token (LeaseLost when another claim owns the run), exactly as
when the pull worker's step API calls it; `send_events` goes through ingest, routed from the
registry, with the deterministic ids the endpoint gave the events (so a repeat is a no-op).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from stepwell.model.event import EventIn
from stepwell.model.records import FanOutCounts, Step
from stepwell.push.protocol import (
    CreateChildren,
    Op,
    OpenFanOut,
    RecordStep,
    RegisterWait,
    SealFanOut,
    SendEvents,
    StartChild,
    TimeOutStep,
)
from stepwell.runtime.engine import Engine
from stepwell.store.base import ClaimedRun


@dataclass(frozen=True, slots=True)
class Applied:
    step: Step | None = None  # the step as stored, when the op wrote one
    sealed: FanOutCounts | None = None


def apply_op(engine: Engine, claimed: ClaimedRun, op: Op) -> Applied:
    store, lease = engine.store, claimed.lease
    match op:
        case RecordStep(step):
            return Applied(store.record_step(lease, step))
        case RegisterWait(step, wait):
            return Applied(store.register_wait(lease, step, wait))
        case StartChild(step, child):
            return Applied(store.start_child(lease, step, child))
        case TimeOutStep(step_id, error):
            return Applied(store.time_out_step(lease, step_id, error=error))
        case OpenFanOut(step, function, tolerate):
            return Applied(store.open_fan_out(lease, step, function=function, tolerate=tolerate))
        case CreateChildren(step_id, children):
            store.create_children(lease, step_id, children)
            return Applied()
        case SealFanOut(step_id, total):
            return Applied(sealed=store.seal_fan_out(lease, step_id, total))
        case SendEvents(events):
            engine.send([EventIn(name, data, id=event_id) for event_id, name, data in events])
            return Applied()
    raise AssertionError(op)


def with_step(claimed: ClaimedRun, step: Step) -> ClaimedRun:
    """The claimed run with `step` memoized (replacing an earlier state of the same step)."""
    steps = [s for s in claimed.steps if s.id != step.id]
    steps.append(step)
    steps.sort(key=lambda s: s.position)
    return replace(claimed, steps=tuple(steps))
