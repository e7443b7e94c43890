"""`ctx`: what a function sees of its run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

from stepwell.model.records import Event
from stepwell.observe.runlog import RunLogger
from stepwell.runtime.steps import AsyncSteps, Steps

S = TypeVar("S", Steps, AsyncSteps)


@dataclass(frozen=True, slots=True)
class Context(Generic[S]):
    """The run's event, identity, step API and logger (`ctx.log`).

    Code outside `ctx.step` calls may run more than once (on every replay): put side effects in
    steps, and key external writes by `ctx.run_id` plus the step id to make retries idempotent.
    """

    event: Event
    run_id: str
    function: str
    attempt: int
    step: S
    events: tuple[Event, ...] = ()  # a batch run's events, oldest first; otherwise (event,)
    # a logging adapter: lines are also stored with the run (`stepwell runs show`, App.run_logs)
    log: RunLogger = field(default_factory=lambda: RunLogger("unbound"))
