"""From a claimed run to its settlement: pick the function, execute one attempt, decide."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from stepwell.model.records import ErrorInfo
from stepwell.model.retry import RetryPolicy
from stepwell.runtime.engine import Engine
from stepwell.runtime.executor import execute_async, execute_sync
from stepwell.runtime.outcomes import Failed, Outcome, decide
from stepwell.store.base import ClaimedRun, Settlement

RunSync = Callable[..., Awaitable[Any]]
LeaseCheck = Callable[[], bool]


async def process_claimed(
    engine: Engine, claimed: ClaimedRun, run_sync: RunSync, *, alive: LeaseCheck | None = None
) -> Settlement | None:
    """`run_sync(fn, *args)` decides where sync user code runs (a thread pool, or inline in tests);
    `alive()` says whether the worker still trusts the run's lease (checked before user code)."""
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
        outcome = await run_sync(execute_sync, spec, claimed, engine, alive)
    return decide(outcome, claimed, spec.retry)
