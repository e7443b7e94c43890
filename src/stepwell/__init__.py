"""Stepwell: durable, event-driven background jobs and workflows for Python."""

from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from stepwell.client import Client


def __getattr__(name: str) -> object:
    """`stepwell.Client` is imported on first use: httpx stays out of processes that never call a server."""
    if name == "Client":
        from stepwell.client import Client

        return Client
    raise AttributeError(f"module 'stepwell' has no attribute {name!r}")


__all__ = [
    "App",
    "Backoff",
    "Batch",
    "CancelOn",
    "Client",
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
