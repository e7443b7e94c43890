"""Stepwell: durable, event-driven background jobs and workflows for Python."""

from stepwell.app import App
from stepwell.errors import (
    FanOutFailed,
    InvokeError,
    InvokeTimeout,
    NonDeterminismError,
    NonRetriableError,
    RetryAfterError,
    StepError,
    StepwellError,
)
from stepwell.model.event import EventIn
from stepwell.model.function import on_event
from stepwell.model.records import Event, Run, RunStatus, Step, StepStatus
from stepwell.model.retry import Backoff
from stepwell.runtime.context import Context
from stepwell.runtime.fanout import FanOut

__all__ = [
    "App",
    "Backoff",
    "Context",
    "Event",
    "EventIn",
    "FanOut",
    "FanOutFailed",
    "InvokeError",
    "InvokeTimeout",
    "NonDeterminismError",
    "NonRetriableError",
    "RetryAfterError",
    "Run",
    "RunStatus",
    "Step",
    "StepError",
    "StepStatus",
    "StepwellError",
    "on_event",
]

__version__ = "0.1.0"
