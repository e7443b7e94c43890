"""From a claimed run to its settlement: pick the function, execute one attempt, decide."""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable
from typing import Any

from stepwell.model.records import ErrorInfo
from stepwell.model.retry import RetryPolicy
from stepwell.observe.attempt import observe_attempt
from stepwell.runtime.engine import Engine
from stepwell.runtime.executor import execute_async, execute_sync
from stepwell.runtime.outcomes import Failed, Outcome, decide
from stepwell.store.base import ClaimedRun, Settlement

RunSync = Callable[..., Awaitable[Any]]
LeaseCheck = Callable[[], bool]


async def process_claimed(
    engine: Engine, claimed: ClaimedRun, run_sync: RunSync, *, alive: LeaseCheck | None = None
) -> Settlement | None:
    """`run_sync(fn, *args)` decides where sync user code runs (the worker's user threads, or inline in tests);
    `alive()` says whether the worker still trusts the run's lease (checked before user code).

    The attempt is observed here, once (logs, metrics, its span); sync code runs in a copy of this
    context, so that its records and spans know their run."""
    with observe_attempt(claimed, engine.clock.now) as attempt:
        settlement = await _attempt(engine, claimed, run_sync, alive)
        attempt.settled(settlement)
        return settlement


async def _attempt(
    engine: Engine, claimed: ClaimedRun, run_sync: RunSync, alive: LeaseCheck | None
) -> Settlement | None:
    spec = engine.registry.get(claimed.function)
    outcome: Outcome
    if spec is None:
        outcome = Failed(
            ErrorInfo("UnknownFunction", f"function {claimed.function!r} is not registered on this worker"),
            retriable=True,
        )
        return decide(outcome, claimed, RetryPolicy())
    if spec.is_async:
        outcome = await execute_async(spec, claimed, engine, alive)
    else:
        outcome = await run_sync(contextvars.copy_context().run, execute_sync, spec, claimed, engine, alive)
    return decide(outcome, claimed, spec.retry)
