"""The step API on `ctx.step`: memoized, ordered, fenced.

`StepLedger` holds what is the same for sync and async code (ids, memo, order checks, what to
write); `Steps` and `AsyncSteps` are the two thin faces users call.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

from stepwell.clock import utc
from stepwell.errors import (
    ConfigurationError,
    LeaseLost,
    NonDeterminismError,
    NonRetriableError,
    OutputNotSerializable,
    StepError,
    Suspend,
)
from stepwell.model.durations import Duration, parse_duration
from stepwell.model.jsonvalue import normalize
from stepwell.model.records import Step, StepKind, StepStatus
from stepwell.runtime.errorinfo import error_info
from stepwell.store.base import ClaimedRun, StepWrite, Store

T = TypeVar("T")


class SuspendRun(Suspend):
    """Internal: the run sleeps until `until`."""

    def __init__(self, until: datetime) -> None:
        super().__init__(until)
        self.until = until


class StepLedger:
    """One attempt's view of a run's steps."""

    def __init__(self, claimed: ClaimedRun, store: Store) -> None:
        self.claimed = claimed
        self.store = store
        self.recorded = {step.position: step for step in claimed.steps}
        self.memo: dict[str, Step] = {step.id: step for step in claimed.steps}
        self.calls: dict[str, int] = {}
        self.position = 0
        self.failed_step: str | None = None
        self.last_attempt = claimed.attempt >= claimed.max_attempts

    def next_id(self, name: object, kind: StepKind) -> tuple[str, int]:
        """The deterministic id for this call (`name`, `name#2`, ...) and its position; checks replay order."""
        if not isinstance(name, str) or not name or len(name) > 200:
            raise ConfigurationError(f"step id {name!r} must be a non-empty str of at most 200 characters")
        count = self.calls[name] = self.calls.get(name, 0) + 1
        step_id = name if count == 1 else f"{name}#{count}"
        position = self.position
        self.position += 1
        recorded = self.recorded.get(position)
        if recorded is None:
            recorded = self.memo.get(step_id)  # the same id recorded at another position is a reorder too
        if recorded is not None and (recorded.id, recorded.kind, recorded.position) != (step_id, kind, position):
            raise NonDeterminismError(position, f"{recorded.kind.value} {recorded.id}", f"{kind.value} {step_id}")
        return step_id, position

    def replayed(self, step_id: str) -> tuple[bool, Any]:
        """(True, output) when the step's result is memoized; raises its stored error when it failed for good."""
        step = self.memo.get(step_id)
        if step is None or step.status == StepStatus.ERRORED:
            return False, None
        if step.status == StepStatus.FAILED and step.error is not None:
            self.failed_step = step_id
            raise StepError(step_id, step.error.type, step.error.message)
        return step.status == StepStatus.COMPLETED, step.output

    def success(self, step_id: str, position: int, result: object) -> tuple[StepWrite, Any]:
        data, value = normalize(result, where=f"step {step_id!r}")
        return StepWrite(step_id, position, StepKind.RUN, StepStatus.COMPLETED, output=data), value

    def failure(self, step_id: str, position: int, error: BaseException) -> StepWrite:
        self.failed_step = step_id
        final = self.last_attempt or isinstance(error, NonRetriableError | OutputNotSerializable)
        status = StepStatus.FAILED if final else StepStatus.ERRORED
        return StepWrite(step_id, position, StepKind.RUN, status, error=error_info(error, step=step_id))

    def sleep_plan(
        self, step_id: str, position: int, duration: Duration | None, until: datetime | None
    ) -> StepWrite | None:
        """What to write for a sleep; None when it is already over and marked so."""
        step = self.memo.get(step_id)
        if step is not None:
            if step.status == StepStatus.COMPLETED:
                return None
            assert step.wake_at is not None
            if step.wake_at <= self.claimed.claimed_at:
                return StepWrite(step_id, position, StepKind.SLEEP, StepStatus.COMPLETED, wake_at=step.wake_at)
            raise SuspendRun(step.wake_at)
        if until is not None:
            return StepWrite(step_id, position, StepKind.SLEEP, StepStatus.SLEEPING, wake_at=utc(until))
        delay = parse_duration(duration, option=f"step.sleep({step_id!r}) duration")  # type: ignore[arg-type]
        return StepWrite(step_id, position, StepKind.SLEEP, StepStatus.SLEEPING, sleep_for=delay)

    def after_sleep_written(self, written: Step) -> None:
        if written.status == StepStatus.SLEEPING:
            assert written.wake_at is not None
            raise SuspendRun(written.wake_at)

    def record(self, write: StepWrite) -> Step:
        return self.store.record_step(self.claimed.lease, write)


class Steps:
    """`ctx.step` in a sync function."""

    def __init__(self, ledger: StepLedger) -> None:
        self._ledger = ledger

    def run(self, step_id: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn` once for this run; later replays return its stored result."""
        ledger = self._ledger
        sid, position = ledger.next_id(step_id, StepKind.RUN)
        done, output = ledger.replayed(sid)
        if done:
            return output  # type: ignore[no-any-return]
        try:
            result = fn(*args, **kwargs)
            write, value = ledger.success(sid, position, result)
        except (Suspend, LeaseLost, asyncio.CancelledError):
            raise
        except BaseException as error:
            ledger.record(ledger.failure(sid, position, error))
            raise
        ledger.record(write)
        return value  # type: ignore[no-any-return]

    def sleep(self, step_id: str, duration: Duration) -> None:
        """Suspend the run for `duration` without holding a worker."""
        self._sleep(step_id, duration, None)

    def sleep_until(self, step_id: str, when: datetime) -> None:
        """Suspend the run until `when` (timezone-aware)."""
        self._sleep(step_id, None, when)

    def _sleep(self, step_id: str, duration: Duration | None, until: datetime | None) -> None:
        sid, position = self._ledger.next_id(step_id, StepKind.SLEEP)
        write = self._ledger.sleep_plan(sid, position, duration, until)
        if write is not None:
            self._ledger.after_sleep_written(self._ledger.record(write))


class AsyncSteps:
    """`ctx.step` in an async function: the same calls, awaited."""

    def __init__(self, ledger: StepLedger) -> None:
        self._ledger = ledger

    async def _record(self, write: StepWrite) -> Step:
        return await asyncio.get_running_loop().run_in_executor(None, self._ledger.record, write)

    async def run(self, step_id: str, fn: Callable[..., T | Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Run `fn` (sync or async) once for this run; later replays return its stored result."""
        ledger = self._ledger
        sid, position = ledger.next_id(step_id, StepKind.RUN)
        done, output = ledger.replayed(sid)
        if done:
            return output  # type: ignore[no-any-return]
        try:
            result = fn(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
            write, value = ledger.success(sid, position, result)
        except (Suspend, LeaseLost, asyncio.CancelledError):
            raise
        except BaseException as error:
            await self._record(ledger.failure(sid, position, error))
            raise
        await self._record(write)
        return value  # type: ignore[no-any-return]

    async def sleep(self, step_id: str, duration: Duration) -> None:
        await self._sleep(step_id, duration, None)

    async def sleep_until(self, step_id: str, when: datetime) -> None:
        await self._sleep(step_id, None, when)

    async def _sleep(self, step_id: str, duration: Duration | None, until: datetime | None) -> None:
        sid, position = self._ledger.next_id(step_id, StepKind.SLEEP)
        write = self._ledger.sleep_plan(sid, position, duration, until)
        if write is not None:
            self._ledger.after_sleep_written(await self._record(write))
