"""The runtime's one seam: an attempt and an executing step, observed.

`observe_attempt` wraps one attempt (process_claimed): the run span, the context fields of every
log record, the lifecycle records and the run metrics, decided from the attempt's settlement.
`observe_step` wraps the execution of a step's code (never a replay of its memoized result).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from opentelemetry.trace import Span

from stepwell.observe import logs, runlog, scope, tracing
from stepwell.observe import metrics as metrics_module
from stepwell.observe.settings import SETTINGS
from stepwell.store.base import ClaimedRun, Complete, Fail, Release, Retry, Settlement, Suspend


class Attempt:
    """One attempt in progress; `settled` is told how it ended."""

    __slots__ = ("_span_token", "_token", "claimed", "outcome", "scope", "span", "started")

    def __init__(self, claimed: ClaimedRun, now: Callable[[], datetime]) -> None:
        self.claimed = claimed
        self.scope = scope.AttemptScope(claimed.run_id, claimed.function, claimed.attempt, claimed.event.id, now=now)
        self.started = time.perf_counter()
        self.span: Span | None = None
        self.outcome = "lease_lost"
        self._token: Any = None
        self._span_token: Any = None

    def __enter__(self) -> Attempt:
        claimed = self.claimed
        self._token = scope.ATTEMPT.set(self.scope)
        found = tracing.tracer()
        if found is not None:
            self.span = span = tracing.start_run_span(found, claimed)
            self._span_token = tracing.activate(span)  # current even when not recorded: child runs inherit it
            if span.is_recording():
                self.scope.tracer = found  # its steps' spans are made with it
        if logs.RUNS.isEnabledFor(logging.DEBUG):
            logs.lifecycle(logging.DEBUG, "started attempt %d/%d", claimed.attempt, claimed.max_attempts)
        return self

    def __exit__(self, *exc: object) -> None:
        span = self.span
        if span is not None:
            if span.is_recording():  # a span its sampler dropped takes no attributes
                span.set_attribute("stepwell.outcome", self.outcome)
            span.end()
            tracing.deactivate(self._span_token)
        scope.ATTEMPT.reset(self._token)

    def settled(self, settlement: Settlement | None) -> None:
        """Metrics and lifecycle records of the outcome; the attempt's ctx.log lines go out with it."""
        elapsed = time.perf_counter() - self.started
        claimed = self.claimed
        if settlement is not None:
            runlog.hand_over(self.scope)
        else:
            self.scope.take_lines()
        match settlement:
            case Complete():
                self.outcome = "completed"
                if logs.RUNS.isEnabledFor(logging.DEBUG):  # not even the arguments when it is not written
                    logs.lifecycle(
                        logging.DEBUG, "completed in %.1f ms", elapsed * 1000, duration_ms=round(elapsed * 1000, 3)
                    )
            case Retry(_, error, delay):
                self.outcome = "retried"
                seconds = delay.total_seconds()
                logs.lifecycle(
                    logging.INFO, "attempt %d/%d failed (%s); retry in %.1fs", claimed.attempt,
                    claimed.max_attempts, error, seconds, error=str(error), delay=seconds,
                )  # fmt: skip
            case Fail(_, error, reason):
                self.outcome = "failed"
                why = reason.value.replace("_", " ")
                logs.lifecycle(
                    logging.ERROR, "dead-lettered after attempt %d/%d (%s): %s", claimed.attempt,
                    claimed.max_attempts, why, error, error=str(error), traceback=logs.traceback_tail(error),
                )  # fmt: skip
            case Suspend(_, until, waiting):
                self.outcome = "suspended"
                logs.lifecycle(logging.DEBUG, "%s until %s", "waiting" if waiting else "sleeping", until or "woken")
            case Release():
                self.outcome = "interrupted"
                logs.lifecycle(logging.WARNING, "interrupted by the store; given back without counting the attempt")
            case None:
                logs.lifecycle(logging.DEBUG, "lease lost; the outcome was dropped")
        if SETTINGS.metrics:
            self._count(elapsed)
        if self.span is not None and self.outcome in ("retried", "failed"):
            tracing.fail(self.span, self.outcome)

    def _count(self, elapsed: float) -> None:
        found = metrics_module.current().function(self.claimed.function)
        outcome = self.outcome
        found.duration(outcome).observe(elapsed)
        if outcome == "completed":
            found.finished["completed"].inc()
        elif outcome == "failed":
            found.finished["failed"].inc()
            found.dead_letters.inc()
        elif outcome == "retried":
            found.retried.inc()


def observe_attempt(claimed: ClaimedRun, now: Callable[[], datetime]) -> Attempt:
    """Around one attempt (`with observe_attempt(...) as attempt:`), on the task that runs it; the
    runtime copies its context into the threads that run sync code."""
    return Attempt(claimed, now)


class StepObservation:
    """Around the execution of a step's code: its span, its duration, the `step` field of records."""

    __slots__ = ("_span_token", "_token", "attempt", "position", "span", "started", "step_id")

    def __init__(self, step_id: str, position: int) -> None:
        self.step_id, self.position = step_id, position
        self.span: Span | None = None

    def __enter__(self) -> None:
        self.attempt = attempt = scope.ATTEMPT.get()
        self._token = scope.STEP.set(scope.StepScope(self.step_id, self.position))
        found = None if attempt is None else attempt.tracer  # None: a run its sampler dropped, or not traced
        if found is not None:
            self.span = span = tracing.start_step_span(found, self.step_id)
            self._span_token = tracing.activate(span)
        self.started = time.perf_counter()

    def __exit__(self, error: type[BaseException] | None, *exc: object) -> None:
        attempt = self.attempt
        if attempt is not None and SETTINGS.metrics:
            status = "ok" if error is None else "error"
            metrics_module.current().step(attempt.function, self.step_id, status).observe(
                time.perf_counter() - self.started
            )
        span = self.span
        if span is not None:
            if error is not None:
                tracing.fail(span, "step raised")
            span.end()
            tracing.deactivate(self._span_token)
        scope.STEP.reset(self._token)


def observe_step(step_id: str, position: int) -> StepObservation:
    """`with observe_step(step_id, position):` around the execution of a step's code (never a replay of
    its memoized result)."""
    return StepObservation(step_id, position)


def run_logger(function: str, position: Callable[[], int]) -> runlog.RunLogger:
    """`ctx.log` for the attempt in progress (bound to its ledger's step count), or a plain adapter."""
    attempt = scope.ATTEMPT.get()
    if attempt is not None and attempt.function == function:
        attempt.position = position
        return runlog.RunLogger(function, attempt)
    return runlog.RunLogger(function)


class PushedAttempt:
    """The run span of one push request, at the endpoint: the pull worker's span (`start_run_span`)
    continuing, or linking to, the context the dispatcher sent; current while the function runs, so
    its steps' spans are its children. Metrics and lifecycle records stay with the dispatcher."""

    __slots__ = ("_span_token", "attempt", "claimed", "continued", "span")

    def __init__(self, claimed: ClaimedRun, attempt: scope.AttemptScope, continued: bool | None) -> None:
        self.claimed, self.attempt, self.continued = claimed, attempt, continued
        self.span: Span | None = None
        self._span_token: Any = None

    def __enter__(self) -> PushedAttempt:
        found = tracing.tracer()
        if found is not None:
            self.span = span = tracing.start_run_span(found, self.claimed, continued=self.continued)
            self._span_token = tracing.activate(span)
            if span.is_recording():
                self.attempt.tracer = found  # its steps' spans are made with it
        return self

    def ended(self, outcome: str, failed: bool) -> None:
        """How the request ended (the protocol's result): the span's `stepwell.outcome`, and its status."""
        span = self.span
        if span is not None and span.is_recording():
            span.set_attribute("stepwell.outcome", outcome)
            if failed:
                tracing.fail(span, outcome)

    def __exit__(self, *exc: object) -> None:
        if self.span is not None:
            self.span.end()
            tracing.deactivate(self._span_token)


def observe_pushed(claimed: ClaimedRun, attempt: scope.AttemptScope, continued: bool | None) -> PushedAttempt:
    """`with observe_pushed(...) as pushed:` around a push endpoint's replay of one request."""
    return PushedAttempt(claimed, attempt, continued)
