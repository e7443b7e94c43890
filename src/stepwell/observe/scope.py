"""What is running here and now: the attempt and the step, in context variables.

Log records, metrics and ctx.log lines read their run_id, function, attempt, event_id and step
from here, so nothing has to pass them around. Context variables follow asyncio tasks, and the
runtime copies the context into the threads that run sync user code.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from opentelemetry.trace import Tracer

from stepwell.clock import SystemClock
from stepwell.store.base import RunLogLine


@dataclass(slots=True)
class AttemptScope:
    run_id: str
    function: str
    attempt: int
    event_id: str | None
    position: Callable[[], int] = lambda: 0  # steps called so far (the executor binds its ledger's)
    now: Callable[[], datetime] = SystemClock().now  # the engine's clock, bound by observe_attempt
    lines: list[RunLogLine] = field(default_factory=list)  # ctx.log lines not yet written
    seqs: dict[tuple[int, int], int] = field(default_factory=dict)
    buffered: int = 0  # lines taken into `lines` during this attempt (bounded)
    lock: threading.Lock = field(default_factory=threading.Lock)
    tracer: Tracer | None = None  # set when its run span is recorded (sampled): its steps' spans, made with it

    def take_lines(self) -> list[RunLogLine]:
        with self.lock:
            lines, self.lines = self.lines, []
        return lines


@dataclass(frozen=True, slots=True)
class StepScope:
    step_id: str
    position: int


ATTEMPT: contextvars.ContextVar[AttemptScope | None] = contextvars.ContextVar("stepwell_attempt", default=None)
STEP: contextvars.ContextVar[StepScope | None] = contextvars.ContextVar("stepwell_step", default=None)


def fields() -> dict[str, object]:
    """The context fields every log record carries (None outside a run)."""
    attempt, step = ATTEMPT.get(), STEP.get()
    if attempt is None:
        return {"run_id": None, "function": None, "step": None, "attempt": None, "event_id": None}
    return {
        "run_id": attempt.run_id,
        "function": attempt.function,
        "step": None if step is None else step.step_id,
        "attempt": attempt.attempt,
        "event_id": attempt.event_id,
    }
