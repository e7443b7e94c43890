"""Stepwell: durable, event-driven background jobs and workflows for Python.

The public surface, decided once: everything a user's code names is importable from `stepwell`
(tests/test_public_surface.py checks that `__all__` and docs/reference/python-api.md agree).
`stepwell.testing.TestEnv` is the one public name that lives elsewhere: tests import it on purpose.
"""

from typing import TYPE_CHECKING

from stepwell.app import App
from stepwell.errors import (
    Cancelled,
    ConfigurationError,
    DatabaseNotFound,
    EventNotFound,
    EventRejected,
    FanOutFailed,
    InvalidDuration,
    InvalidPayloadFilter,
    InvokeError,
    InvokeTimeout,
    LeaseExpired,
    LeaseLost,
    NonDeterminismError,
    NonRetriableError,
    OutputNotSerializable,
    OutputTooLarge,
    RegistryChanged,
    RemoteError,
    RunNotFound,
    RunTimeout,
    StepError,
    StepNotAwaited,
    StepTimeout,
    StepwellError,
    StoreError,
    StoreFull,
    StoreUnavailable,
    TimeoutExpired,
    UnknownFunction,
)
from stepwell.model.event import EventIn
from stepwell.model.flow import Batch, CancelOn, Concurrency, Debounce, RateLimit, Throttle
from stepwell.model.function import on_event
from stepwell.model.records import (
    DeadLetter,
    Disposition,
    ErrorInfo,
    Event,
    EventRecord,
    FanOutCounts,
    Run,
    RunStatus,
    Step,
    StepStatus,
)
from stepwell.model.retry import Backoff, RetryAfterError
from stepwell.model.schedule import Cron, cron
from stepwell.runtime.context import Context
from stepwell.runtime.fanout import FanOut
from stepwell.runtime.worker import WorkerOptions
from stepwell.store.base import Retention

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
    "Cancelled",
    "Client",
    "Concurrency",
    "ConfigurationError",
    "Context",
    "Cron",
    "DatabaseNotFound",
    "DeadLetter",
    "Debounce",
    "Disposition",
    "ErrorInfo",
    "Event",
    "EventIn",
    "EventNotFound",
    "EventRecord",
    "EventRejected",
    "FanOut",
    "FanOutCounts",
    "FanOutFailed",
    "InvalidDuration",
    "InvalidPayloadFilter",
    "InvokeError",
    "InvokeTimeout",
    "LeaseExpired",
    "LeaseLost",
    "NonDeterminismError",
    "NonRetriableError",
    "OutputNotSerializable",
    "OutputTooLarge",
    "RateLimit",
    "RegistryChanged",
    "RemoteError",
    "Retention",
    "RetryAfterError",
    "Run",
    "RunNotFound",
    "RunStatus",
    "RunTimeout",
    "Step",
    "StepError",
    "StepNotAwaited",
    "StepStatus",
    "StepTimeout",
    "StepwellError",
    "StoreError",
    "StoreFull",
    "StoreUnavailable",
    "Throttle",
    "TimeoutExpired",
    "UnknownFunction",
    "WorkerOptions",
    "cron",
    "on_event",
]

__version__ = "0.1.0"
