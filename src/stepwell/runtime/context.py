"""`ctx`: what a function sees of its run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

from stepwell.model.records import Event
from stepwell.observe.runlog import RunLogger
from stepwell.runtime.steps import AsyncSteps, Steps
from stepwell.store.base import Lease

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
    lease: Lease | None = None  # the claim this attempt runs under (None only in hand-built contexts)

    @property
    def fencing_token(self) -> str | None:
        """The lease token of this attempt: unique per claim of the run, unchanged by renewals.

        Pass it to downstream systems with a side effect, and have them refuse a write whose token
        is not the run's latest (or, to order tokens, compare `attempt`, which grows with every
        claim): a worker paused past its lease is then fenced out there too, not only here.
        """
        return None if self.lease is None else self.lease.token
