"""One attempt of one run: call the user's function against its memoized steps, return an Outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from stepwell.errors import (
    ConfigurationError,
    LeaseLost,
    NonDeterminismError,
    NonRetriableError,
    OutputNotSerializable,
    OutputTooLarge,
    StepError,
    StepNotAwaited,
)
from stepwell.model.function import FunctionSpec
from stepwell.model.jsonvalue import encode
from stepwell.model.retry import RetryAfterError
from stepwell.observe.attempt import run_logger
from stepwell.observe.runlog import RunLogger
from stepwell.runtime.context import Context
from stepwell.runtime.engine import Engine
from stepwell.runtime.errorinfo import error_info
from stepwell.runtime.outcomes import Completed, Failed, Interrupted, LeaseGone, Outcome, Suspended
from stepwell.runtime.steps import AsyncSteps, StepLedger, Steps, SuspendRun
from stepwell.store.base import ClaimedRun

_NOT_RETRIABLE = (
    NonRetriableError,
    OutputNotSerializable,
    OutputTooLarge,
    NonDeterminismError,
    StepError,
    ConfigurationError,
    StepNotAwaited,
)


def execute_sync(
    spec: FunctionSpec, claimed: ClaimedRun, engine: Engine, alive: Callable[[], bool] | None = None
) -> Outcome:
    """Run a sync function's attempt on the calling thread."""
    ledger = StepLedger(claimed, engine, alive)
    if not ledger.lease_alive():
        return LeaseGone()
    ctx = _context(claimed, Steps(ledger), run_logger(claimed.function, lambda: ledger.position))
    try:
        result = spec.handler(ctx)
    except BaseException as error:  # noqa: BLE001 - user code may raise anything, SystemExit included
        return _failure(error, ledger)
    return _completion(spec, result, ledger)


async def execute_async(
    spec: FunctionSpec, claimed: ClaimedRun, engine: Engine, alive: Callable[[], bool] | None = None
) -> Outcome:
    """Run an async function's attempt on the running loop."""
    ledger = StepLedger(claimed, engine, alive)
    if not ledger.lease_alive():
        return LeaseGone()
    steps = AsyncSteps(ledger)
    ctx = _context(claimed, steps, run_logger(claimed.function, lambda: ledger.position))
    try:
        result = await spec.handler(ctx)
    except asyncio.CancelledError:
        steps.unawaited()
        raise
    except BaseException as error:  # noqa: BLE001
        steps.unawaited()
        return _failure(error, ledger)
    missed = steps.unawaited()
    if missed and not ledger.lost and ledger.interrupted is None:
        return Failed(error_info(StepNotAwaited(spec.name, missed), step=missed[0][1]), retriable=False)
    return _completion(spec, result, ledger)


def _context(claimed: ClaimedRun, steps: Steps | AsyncSteps, log: RunLogger) -> Context[Any]:
    return Context(
        claimed.event, claimed.run_id, claimed.function, claimed.attempt, steps, claimed.events, log, claimed.lease
    )


def _completion(spec: FunctionSpec, result: Any, ledger: StepLedger) -> Outcome:
    if ledger.lost:
        return LeaseGone()
    if ledger.interrupted is not None:
        return Interrupted(error_info(ledger.interrupted))
    try:
        output = encode(result, where=f"function {spec.name!r}")
        if len(output) > ledger.engine.max_output_bytes:
            raise OutputTooLarge(f"function {spec.name!r}", len(output), ledger.engine.max_output_bytes)
    except (OutputNotSerializable, OutputTooLarge) as error:
        return Failed(error_info(error), retriable=False)
    return Completed(output)


def _failure(error: BaseException, ledger: StepLedger) -> Outcome:
    if isinstance(error, SuspendRun):
        return Suspended(error.until, error.waiting)
    if isinstance(error, LeaseLost) or ledger.lost:
        return LeaseGone()
    if ledger.interrupted is not None:
        return Interrupted(error_info(ledger.interrupted))
    info = error_info(error, step=ledger.failed_step)
    if isinstance(error, RetryAfterError):
        return Failed(info, retriable=True, retry_after=error.delay)
    return Failed(info, retriable=not isinstance(error, _NOT_RETRIABLE))
