"""`ctx`: what a function sees of its run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from stepwell.model.records import Event
from stepwell.runtime.steps import AsyncSteps, Steps

S = TypeVar("S", Steps, AsyncSteps)


@dataclass(frozen=True, slots=True)
class Context(Generic[S]):
    """The run's event, identity and step API.

    Code outside `ctx.step` calls may run more than once (on every replay): put side effects in
    steps, and key external writes by `ctx.run_id` plus the step id to make retries idempotent.
    """

    event: Event
    run_id: str
    function: str
    attempt: int
    step: S
    events: tuple[Event, ...] = ()  # a batch run's events, oldest first; otherwise (event,)
