"""Stepwell: durable, event-driven background jobs and workflows for Python."""

from stepwell.app import App
from stepwell.errors import (
    FanOutFailed,
    InvokeError,
    InvokeTimeout,
    NonDeterminismError,
    NonRetriableError,
    StepError,
    StepTimeout,
    StepwellError,
)
from stepwell.model.event import EventIn
from stepwell.model.flow import Batch, CancelOn, Concurrency, Debounce, RateLimit, Throttle
from stepwell.model.function import on_event
from stepwell.model.records import Event, Run, RunStatus, Step, StepStatus
from stepwell.model.retry import Backoff, RetryAfterError
from stepwell.model.schedule import Cron, cron
from stepwell.runtime.context import Context
from stepwell.runtime.fanout import FanOut

__all__ = [
    "App",
    "Backoff",
    "Batch",
    "CancelOn",
    "Concurrency",
    "Context",
    "Cron",
    "Debounce",
    "Event",
    "EventIn",
    "FanOut",
    "FanOutFailed",
    "InvokeError",
    "InvokeTimeout",
    "NonDeterminismError",
    "NonRetriableError",
    "RateLimit",
    "RetryAfterError",
    "Run",
    "RunStatus",
    "Step",
    "StepError",
    "StepStatus",
    "StepTimeout",
    "StepwellError",
    "Throttle",
    "cron",
    "on_event",
]

__version__ = "0.1.0"
