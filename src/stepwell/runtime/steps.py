"""The step API on `ctx.step`: memoized, ordered, fenced.

`StepLedger` holds what is the same for every kind of step (ids, memo, order checks);
`Steps` implements each kind for sync code. `AsyncSteps` awaits user coroutines in `run` and
hands every other kind (no user code in them) to `Steps` on a thread, so the logic exists once.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from datetime import datetime
from typing import Any, TypeVar

from stepwell.clock import utc
from stepwell.errors import (
    ConfigurationError,
    FanOutFailed,
    InvokeError,
    InvokeTimeout,
    LeaseLost,
    NonDeterminismError,
    NonRetriableError,
    OutputNotSerializable,
    OutputTooLarge,
    StepError,
    StepTimeout,
    StoreError,
    Suspend,
)
from stepwell.model.durations import Duration, parse_duration
from stepwell.model.event import EventIn
from stepwell.model.expressions import compile_expression
from stepwell.model.function import check_name
from stepwell.model.ids import child_run_id, sent_event_id
from stepwell.model.jsonvalue import encode, normalize
from stepwell.model.matching import canonical_value_at, check_path, document_of
from stepwell.model.records import ErrorInfo, Event, Step, StepKind, StepStatus
from stepwell.observe.attempt import observe_step
from stepwell.runtime.crashpoints import crash_point
from stepwell.runtime.engine import Engine
from stepwell.runtime.errorinfo import error_info
from stepwell.runtime.fanout import FanOut, check_tolerate, summary, tolerated_failures
from stepwell.store.base import ClaimedRun, NewChild, NewRun, NewWait, StepWrite

T = TypeVar("T")
CHILD_EVENT = "stepwell/function.invoked"
FAN_OUT_CHUNK = 1000


class SuspendRun(Suspend):
    """Internal: the run sleeps until `until`, or waits to be woken (`waiting`) with `until` as its timeout."""

    def __init__(self, until: datetime | None, waiting: bool = False) -> None:
        super().__init__(until)
        self.until, self.waiting = until, waiting


class StepLedger:
    """One attempt's view of a run's steps."""

    def __init__(self, claimed: ClaimedRun, engine: Engine, alive: Callable[[], bool] | None = None) -> None:
        self.claimed = claimed
        self.alive = alive  # the worker's local lease deadline; None: no worker watches (inline tests)
        self.engine = engine
        self.store = engine.store
        self.lease = claimed.lease
        self.recorded = {step.position: step for step in claimed.steps}
        self.memo: dict[str, Step] = {step.id: step for step in claimed.steps}
        self.calls: dict[str, int] = {}
        self.position = 0
        self.failed_step: str | None = None
        self.lost = False  # a write under the lease was refused: no further step may start
        self.interrupted: StoreError | None = None  # the store failed under this attempt: stop, give the run back
        self.last_attempt = claimed.attempt >= claimed.max_attempts
        spec = engine.registry.get(claimed.function)
        flow = spec.flow if spec is not None else None
        self.step_timeout = None if flow is None or flow.step_timeout is None else flow.step_timeout.total_seconds()

    def lease_alive(self) -> bool:
        """False once a write was refused or the worker's local lease deadline passed (for good)."""
        if not self.lost and self.alive is not None and not self.alive():
            self.lost = True
        return not self.lost

    def ensure_lease(self) -> None:
        """Checked before any step, and again just before a step's user code is called: a worker
        paused past its lease must not run code of a step another worker may have completed."""
        if not self.lease_alive():
            raise LeaseLost(f"run {self.lease.run_id}: lease lost; no further step starts")

    def next_id(self, name: object, kind: StepKind) -> tuple[str, int]:
        """The deterministic id for this call (`name`, `name#2`, ...) and its position; checks replay order."""
        self.ensure_lease()
        if self.interrupted is not None:
            raise self.interrupted
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
        if step is None:
            return False, None
        return self.outcome(step)

    def outcome(self, step: Step) -> tuple[bool, Any]:
        if step.status == StepStatus.COMPLETED:
            return True, step.output
        if step.status == StepStatus.FAILED and step.error is not None:
            self.failed_step = step.id
            raise _stored_error(step)
        return False, None

    def success(self, step_id: str, position: int, result: object, started: datetime) -> tuple[StepWrite, Any]:
        data, value = normalize(result, where=f"step {step_id!r}")
        if len(data) > self.engine.max_output_bytes:
            raise OutputTooLarge(f"step {step_id!r}", len(data), self.engine.max_output_bytes)
        write = StepWrite(step_id, position, StepKind.RUN, StepStatus.COMPLETED, output=data, started_at=started)
        return write, value

    def failure(self, step_id: str, position: int, error: BaseException, started: datetime) -> StepWrite:
        self.failed_step = step_id
        final = self.last_attempt or isinstance(error, NonRetriableError | OutputNotSerializable | OutputTooLarge)
        status = StepStatus.FAILED if final else StepStatus.ERRORED
        info = error_info(error, step=step_id)
        return StepWrite(step_id, position, StepKind.RUN, status, error=info, started_at=started)

    def now(self) -> datetime:
        return self.engine.clock.now()

    def timed_out(self, step: Step) -> bool:
        return step.wake_at is not None and step.wake_at <= self.claimed.claimed_at

    def record(self, write: StepWrite) -> Step:
        return self.fenced(self.store.record_step, self.lease, write)

    def fenced(self, write: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Every write under the lease goes through here: one refusal stops the attempt for good,
        even if user code catches the LeaseLost and carries on."""
        try:
            return write(*args, **kwargs)
        except LeaseLost:
            self.lost = True
            raise
        except StoreError as error:
            self.interrupted = error
            raise


def _stored_error(step: Step) -> StepError:
    assert step.error is not None
    kind = {StepKind.INVOKE: InvokeError, StepKind.FAN_OUT: FanOutFailed}.get(step.kind, StepError)
    if step.error.type in ("InvokeTimeout", "stepwell.errors.InvokeTimeout"):  # the second: stored before 0.2
        kind = InvokeTimeout
    return kind(step.id, step.error.type, step.error.message)


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
        started = ledger.now()
        ledger.ensure_lease()
        try:
            with observe_step(sid, position):
                if ledger.step_timeout is None:
                    result = fn(*args, **kwargs)
                else:
                    result = _call_with_timeout(sid, ledger.step_timeout, fn, args, kwargs)
            write, value = ledger.success(sid, position, result, started)
        except (Suspend, LeaseLost, asyncio.CancelledError):
            raise
        except BaseException as error:
            ledger.record(ledger.failure(sid, position, error, started))
            raise
        crash_point("step.after_effect")
        ledger.record(write)
        crash_point("step.after_commit")
        return value  # type: ignore[no-any-return]

    def sleep(self, step_id: str, duration: Duration) -> None:
        """Suspend the run for `duration` without holding a worker."""
        delay = parse_duration(duration, option=f"step.sleep({step_id!r}) duration")
        self._sleep(step_id, StepWrite(step_id, 0, StepKind.SLEEP, StepStatus.SLEEPING, sleep_for=delay))

    def sleep_until(self, step_id: str, when: datetime) -> None:
        """Suspend the run until `when` (timezone-aware)."""
        self._sleep(step_id, StepWrite(step_id, 0, StepKind.SLEEP, StepStatus.SLEEPING, wake_at=utc(when)))

    def _sleep(self, name: str, plan: StepWrite) -> None:
        ledger = self._ledger
        sid, position = ledger.next_id(name, StepKind.SLEEP)
        step = ledger.memo.get(sid)
        if step is None:
            step = ledger.record(
                StepWrite(
                    sid, position, StepKind.SLEEP, StepStatus.SLEEPING, wake_at=plan.wake_at, sleep_for=plan.sleep_for
                )
            )
        if step.status == StepStatus.COMPLETED:
            return
        assert step.wake_at is not None
        if not ledger.timed_out(step):
            raise SuspendRun(step.wake_at)
        ledger.record(StepWrite(sid, position, StepKind.SLEEP, StepStatus.COMPLETED, wake_at=step.wake_at))

    def wait_for_event(
        self,
        step_id: str,
        *,
        event: str,
        match: str | None = None,
        if_: str | None = None,
        timeout: Duration | None = None,
    ) -> Event | None:
        """Suspend until an event named `event` arrives that matches; None at the timeout.

        `match="data.x"`: the new event's `data.x` equals this run's event's `data.x` (indexed).
        `if_`: a CEL condition over `event` (this run's event) and `async` (the new one).
        Only events sent after the wait began count.
        """
        ledger = self._ledger
        sid, position = ledger.next_id(step_id, StepKind.WAIT)
        step = ledger.memo.get(sid)
        if step is None:
            step = ledger.fenced(
                ledger.store.register_wait,
                ledger.lease,
                StepWrite(sid, position, StepKind.WAIT, StepStatus.WAITING),
                self._new_wait(sid, event, match, if_, timeout),
            )
        if step.status == StepStatus.WAITING:
            if not ledger.timed_out(step):
                raise SuspendRun(step.wake_at, waiting=True)
            step = ledger.fenced(ledger.store.time_out_step, ledger.lease, sid, error=None)
        done, output = ledger.outcome(step)
        return _event(output) if done and output is not None else None

    def _new_wait(self, sid: str, event: str, match: str | None, if_: str | None, timeout: Duration | None) -> NewWait:
        check_name(event, f"wait_for_event({sid!r}) event")
        origin = document_of(self._ledger.claimed.event)
        value = None
        if match is not None:
            value = canonical_value_at(origin, check_path(match))
            if value is None:
                raise ConfigurationError(f"wait_for_event({sid!r}): this run's event has no value at {match!r}")
        if if_ is not None:
            compile_expression(if_, f"wait_for_event({sid!r}) if_")
        delay = None if timeout is None else parse_duration(timeout, option=f"wait_for_event({sid!r}) timeout")
        return NewWait(event, match, value, if_, encode(origin, where="the waiting run's event"), delay)

    def invoke(self, step_id: str, function: Any, data: Any = None, *, timeout: Duration | None = None) -> Any:
        """Start `function` as a child run with `data` and return its output; InvokeError if it fails."""
        ledger = self._ledger
        sid, position = ledger.next_id(step_id, StepKind.INVOKE)
        step = ledger.memo.get(sid)
        if step is None:
            spec = ledger.engine.function(function)
            delay = None if timeout is None else parse_duration(timeout, option=f"invoke({sid!r}) timeout")
            child = NewRun(
                id=child_run_id(ledger.lease.run_id, sid),
                function=spec.name,
                max_attempts=spec.retry.max_attempts,
                on_failure=spec.on_failure,
                input=encode({} if data is None else data, where=f"invoke({sid!r}) data"),
                input_name=CHILD_EVENT,
                parent_id=ledger.lease.run_id,
            )
            step = ledger.fenced(
                ledger.store.start_child,
                ledger.lease,
                StepWrite(sid, position, StepKind.INVOKE, StepStatus.WAITING, sleep_for=delay),
                NewChild(child, index=None),
            )
        if step.status == StepStatus.WAITING:
            if not ledger.timed_out(step):
                raise SuspendRun(step.wake_at, waiting=True)
            timeout_error = ErrorInfo("InvokeTimeout", f"the child run of step {sid!r} timed out")
            step = ledger.fenced(ledger.store.time_out_step, ledger.lease, sid, error=timeout_error)
        return ledger.outcome(step)[1]

    def send_event(self, step_id: str, name: str, data: Any = None) -> str:
        """Send an event exactly once for this run, however often the function replays; returns its id."""
        ledger = self._ledger
        sid, position = ledger.next_id(step_id, StepKind.SEND)
        done, output = ledger.replayed(sid)
        if done:
            return str(output)
        [accepted] = ledger.engine.send([EventIn(name, data, id=sent_event_id(ledger.lease.run_id, sid))])
        ledger.record(
            StepWrite(sid, position, StepKind.SEND, StepStatus.COMPLETED, output=encode(accepted.id, where=sid))
        )
        return accepted.id

    def fan_out(self, step_id: str, function: Any, items: Iterable[Any], *, tolerate: int | float = 0) -> FanOut:
        """One child run of `function` per item (its `ctx.event.data`); suspend until every child has finished.

        Children are created in chunks with deterministic ids, so a parent that crashes half-way
        resumes without duplicates. More failed children than `tolerate` (a count, or a fraction
        below 1) raises FanOutFailed.
        """
        ledger = self._ledger
        sid, position = ledger.next_id(step_id, StepKind.FAN_OUT)
        step = ledger.memo.get(sid)
        run_id = ledger.lease.run_id
        if step is not None and step.status != StepStatus.WAITING:
            return self._fan_out_result(sid, ledger.outcome(step)[1])
        if step is not None:
            counts = ledger.store.fan_out_counts(run_id, sid)
        else:
            spec = ledger.engine.function(function)
            level = check_tolerate(tolerate)
            ledger.fenced(
                ledger.store.open_fan_out,
                ledger.lease,
                StepWrite(sid, position, StepKind.FAN_OUT, StepStatus.WAITING),
                function=spec.name,
                tolerate=level,
            )
            counts = ledger.store.fan_out_counts(run_id, sid)
        if counts.total is None:
            counts = self._create_children(sid, ledger.engine.function(function), items)
        if not counts.done:
            raise SuspendRun(None, waiting=True)
        allowed = tolerated_failures(check_tolerate(tolerate), counts.total or 0)
        lost = counts.failed + counts.cancelled
        if lost > allowed:
            error = FanOutFailed(sid, "FanOutFailed", f"{lost} of {counts.total} children failed; {allowed} tolerated")
            ledger.failed_step = sid
            ledger.record(
                StepWrite(sid, position, StepKind.FAN_OUT, StepStatus.FAILED, error=error_info(error, step=sid))
            )
            raise error
        output = summary(counts)
        ledger.record(
            StepWrite(sid, position, StepKind.FAN_OUT, StepStatus.COMPLETED, output=encode(output, where=sid))
        )
        return self._fan_out_result(sid, output)

    def _create_children(self, sid: str, spec: Any, items: Iterable[Any]) -> Any:
        ledger = self._ledger
        run_id = ledger.lease.run_id
        chunk: list[NewChild] = []
        total = 0
        for index, item in enumerate(items):
            data = encode(item, where=f"fan_out({sid!r}) item #{index}")
            run = NewRun(
                id=child_run_id(run_id, sid, index),
                function=spec.name,
                max_attempts=spec.retry.max_attempts,
                on_failure=spec.on_failure,
                input=data,
                input_name=CHILD_EVENT,
                parent_id=run_id,
            )
            chunk.append(NewChild(run, index))
            total += 1
            if len(chunk) == FAN_OUT_CHUNK:
                ledger.fenced(ledger.store.create_children, ledger.lease, sid, chunk)
                chunk = []
        if chunk:
            ledger.fenced(ledger.store.create_children, ledger.lease, sid, chunk)
        return ledger.fenced(ledger.store.seal_fan_out, ledger.lease, sid, total)

    def _fan_out_result(self, sid: str, output: Any) -> FanOut:
        store, run_id = self._ledger.store, self._ledger.lease.run_id
        return FanOut(output, functools.partial(_page, store, run_id, sid))


def _call_with_timeout(step_id: str, timeout: float, fn: Callable[..., T], args: Any, kwargs: Any) -> T:
    """Run a sync step on its own thread and stop waiting after `timeout` seconds of real time."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = fn(*args, **kwargs)
        except BaseException as error:  # noqa: BLE001 - handed back to the caller's thread
            outcome["error"] = error

    context = contextvars.copy_context()  # the step's code logs and traces as the step
    thread = threading.Thread(target=context.run, args=(target,), name=f"stepwell-step-{step_id}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise StepTimeout(f"step {step_id!r} ran longer than its timeout of {timeout:g}s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]  # type: ignore[no-any-return]


def _page(store: Any, run_id: str, sid: str, after: int, limit: int) -> Any:
    return store.fan_out_results(run_id, sid, after=after, limit=limit)


def _event(document: dict[str, Any]) -> Event:
    ts = datetime.fromisoformat(document["ts"]) if document.get("ts") else None
    return Event(document.get("id"), document["name"], document.get("data"), ts)  # type: ignore[arg-type]


class AsyncSteps:
    """`ctx.step` in an async function: the same calls, awaited.

    Each call returns a coroutine that is remembered until the attempt ends: one never awaited (a
    forgotten `await`, which Python only warns about) fails the run with StepNotAwaited instead of
    letting it complete without its step.
    """

    def __init__(self, ledger: StepLedger) -> None:
        self._ledger = ledger
        self._sync = Steps(ledger)
        self._calls: list[tuple[str, object, Coroutine[Any, Any, Any]]] = []

    def _track(self, method: str, step_id: object, call: Coroutine[Any, Any, T]) -> Coroutine[Any, Any, T]:
        if len(self._calls) >= 64:  # long runs: forget the calls already started
            self._calls = [c for c in self._calls if inspect.getcoroutinestate(c[2]) == inspect.CORO_CREATED]
        self._calls.append((method, step_id, call))
        return call

    def unawaited(self) -> list[tuple[str, str]]:
        """(method, step id) of this attempt's step calls never awaited (closed here: Python does not warn again)."""
        missed = []
        for method, step_id, call in self._calls:
            if inspect.getcoroutinestate(call) == inspect.CORO_CREATED:
                call.close()
                missed.append((method, str(step_id)))
        self._calls = []
        return missed

    async def _off_loop(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)  # records know their run
        return await asyncio.get_running_loop().run_in_executor(None, call)

    def run(
        self, step_id: str, fn: Callable[..., T | Awaitable[T]], *args: Any, **kwargs: Any
    ) -> Coroutine[Any, Any, T]:
        """Run `fn` (sync or async) once for this run; later replays return its stored result."""
        return self._track("run", step_id, self._run(step_id, fn, *args, **kwargs))

    async def _run(self, step_id: str, fn: Callable[..., T | Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        ledger = self._ledger
        sid, position = ledger.next_id(step_id, StepKind.RUN)
        done, output = ledger.replayed(sid)
        if done:
            return output  # type: ignore[no-any-return]
        started = ledger.now()
        ledger.ensure_lease()
        try:
            with observe_step(sid, position):
                result = fn(*args, **kwargs)
                if inspect.isawaitable(result):
                    timeout = ledger.step_timeout
                    result = await asyncio.wait_for(result, timeout) if timeout else await result
            write, value = ledger.success(sid, position, result, started)
        except TimeoutError:
            error = StepTimeout(f"step {sid!r} ran longer than its timeout of {ledger.step_timeout:g}s")
            await self._off_loop(ledger.record, ledger.failure(sid, position, error, started))
            raise error from None
        except (Suspend, LeaseLost, asyncio.CancelledError):
            raise
        except BaseException as error:
            await self._off_loop(ledger.record, ledger.failure(sid, position, error, started))
            raise
        crash_point("step.after_effect")
        await self._off_loop(ledger.record, write)
        crash_point("step.after_commit")
        return value  # type: ignore[no-any-return]

    def sleep(self, step_id: str, duration: Duration) -> Coroutine[Any, Any, None]:
        return self._track("sleep", step_id, self._off_loop(self._sync.sleep, step_id, duration))

    def sleep_until(self, step_id: str, when: datetime) -> Coroutine[Any, Any, None]:
        return self._track("sleep_until", step_id, self._off_loop(self._sync.sleep_until, step_id, when))

    def wait_for_event(
        self,
        step_id: str,
        *,
        event: str,
        match: str | None = None,
        if_: str | None = None,
        timeout: Duration | None = None,
    ) -> Coroutine[Any, Any, Event | None]:
        call = self._off_loop(self._sync.wait_for_event, step_id, event=event, match=match, if_=if_, timeout=timeout)
        return self._track("wait_for_event", step_id, call)

    def invoke(
        self, step_id: str, function: Any, data: Any = None, *, timeout: Duration | None = None
    ) -> Coroutine[Any, Any, Any]:
        return self._track(
            "invoke", step_id, self._off_loop(self._sync.invoke, step_id, function, data, timeout=timeout)
        )

    def send_event(self, step_id: str, name: str, data: Any = None) -> Coroutine[Any, Any, str]:
        return self._track("send_event", step_id, self._off_loop(self._sync.send_event, step_id, name, data))

    def fan_out(
        self, step_id: str, function: Any, items: Iterable[Any], *, tolerate: int | float = 0
    ) -> Coroutine[Any, Any, FanOut]:
        call = self._off_loop(self._sync.fan_out, step_id, function, items, tolerate=tolerate)
        return self._track("fan_out", step_id, call)
