"""The whole exception tree. Each docstring is the default message and says how to fix it.

A leaf: this module imports nothing of ours (an import-linter contract), so every layer may raise
these. The one error that needs a rule of the model to build, `RetryAfterError` (it reads a
duration), lives beside that rule in `stepwell.model.retry` and is exported from `stepwell`.
"""

from __future__ import annotations


class StepwellError(Exception):
    """Base of every error Stepwell raises on purpose."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class ConfigurationError(StepwellError):
    """An option given to Stepwell is invalid; the message names the option and the accepted values."""


class InvalidDuration(ConfigurationError):
    """A duration could not be read; use seconds, a timedelta, or text like '500ms', '10m', '1h30m', '1d'."""


class UnknownFunction(StepwellError):
    """No function with this name is registered on the app; check the name or import the module that defines it."""


class EventRejected(StepwellError):
    """The event was refused and nothing was stored; the message says why."""


class OutputNotSerializable(StepwellError):
    """A value that must be stored as JSON is not JSON-compatible."""

    def __init__(self, where: str, path: str, type_name: str, detail: str = "") -> None:
        self.where, self.path, self.type_name = where, path, type_name
        extra = f" ({detail})" if detail else ""
        super().__init__(
            f"{where} returned a {type_name} at {path}{extra}; "
            "return JSON-compatible data (dict with str keys, list, str, int, float, bool, None)"
        )


class OutputTooLarge(StepwellError):
    """A value to be stored is larger than the configured limit; nothing was stored."""

    def __init__(self, where: str, size: int, limit: int) -> None:
        self.where, self.size, self.limit = where, size, limit
        super().__init__(
            f"{where} returned {size} bytes of JSON, over the limit of {limit} bytes "
            "(store large data elsewhere and return a reference, or raise App(max_output_bytes=...))"
        )


class NonDeterminismError(StepwellError):
    """The function's steps replayed in a different order than they were recorded."""

    def __init__(self, position: int, recorded: str, called: str) -> None:
        self.position, self.recorded, self.called = position, recorded, called
        super().__init__(
            f"step #{position + 1} was recorded as {recorded!r} but the code now calls {called!r}; "
            "a run's steps must be called in the same order on every replay "
            "(deploy renamed or reordered steps as a new function, or let old runs finish first)"
        )


class StoreError(StepwellError):
    """The store failed; the message names the operation."""


class RegistryChanged(StoreError):
    """The function registry changed while an event was being routed; route it again from the new registry."""

    def __init__(self, generation: int) -> None:
        self.generation = generation
        super().__init__(f"the function registry is now at generation {generation}; nothing was stored")


class StoreUnavailable(StoreError):
    """The database cannot be reached right now; the operation changed nothing and can be retried."""


class DatabaseNotFound(StoreError):
    """There is no Stepwell database where this looked, and nothing was created there.

    Point at the right one with --database-url or STEPWELL_DATABASE_URL, or run from the folder that
    holds .stepwell/; `stepwell migrate` creates an empty one.
    """


class StoreFull(StoreError):
    """The database is out of space; nothing was stored. Free disk space; work resumes by itself."""


class LeaseLost(StepwellError):
    """This worker no longer holds the run's lease (it expired or the run was cancelled); its write was refused."""


class RunNotFound(StepwellError):
    """No run with this id exists (it may have been purged by retention)."""


class EventNotFound(StepwellError):
    """No event with this id exists (it may have been purged by retention)."""


class TimeoutExpired(StepwellError):
    """The wait ended before the run reached a terminal status."""


# Errors a run records without a user's exception behind them (their class names are the stored type).


class RunTimeout(StepwellError):
    """The run did not finish within its function's `timeout`; it failed with the reason timed_out."""


class LeaseExpired(StepwellError):
    """The worker running the attempt stopped renewing its lease (it crashed or hung); the run is retried."""


class Cancelled(StepwellError):
    """The child run was cancelled (app.cancel, cancel_on, drain_key, or its invoke's timeout)."""


# Errors a user raises from a function to steer retries.


class NonRetriableError(StepwellError):
    """Raise to fail the run now, without further retries; it goes to the dead-letter list."""


class StepError(StepwellError):
    """A step failed for good on an earlier attempt; replay raises its stored error again.

    A run that fails with it records the step's own error (`ValueError in step 'x': ...`), not this wrapper.
    """

    def __init__(self, step_id: str, error_type: str, message: str) -> None:
        self.step_id, self.error_type, self.error_message = step_id, error_type, message
        super().__init__(f"step {step_id!r} failed: {error_type}: {message}")


class StepNotAwaited(StepwellError):
    """An async function called a `ctx.step` method without `await`, so the step never ran.

    Not retriable: the code must change. Write `await ctx.step.run(...)`.
    """

    def __init__(self, function: str, calls: list[tuple[str, str]]) -> None:
        self.function, self.calls = function, calls
        named = ", ".join(f"ctx.step.{method}({step_id!r})" for method, step_id in calls)
        super().__init__(
            f"function {function!r} called {named} without await, so the step never ran; "
            f"in an async function write `await ctx.step.<method>(...)` (or pass it to asyncio.gather)"
        )


class StepTimeout(StepwellError):
    """A step ran longer than the function's step_timeout; the attempt fails and is retried.

    A sync step cannot be interrupted: it keeps running on its thread and its result is discarded.
    """


class InvokeError(StepError):
    """The invoked child run failed (or was cancelled); `error_type` and `error_message` are the child's."""


class InvokeTimeout(InvokeError):
    """The invoked child run did not finish within the invoke's timeout; the child was cancelled."""


class FanOutFailed(StepError):
    """More children of a fan-out failed than its `tolerate` allows."""


class Suspend(BaseException):
    """Internal: unwinds user code when a run sleeps or waits.

    A BaseException so that a user's `except Exception` cannot swallow it.
    """


class RemoteError(StepwellError):
    """The Stepwell server refused a request; `status`, `code` and `field` say what and where."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        self.status, self.code, self.field = status, code, field
        where = f" (field {field})" if field else ""
        super().__init__(f"{status} {code}: {message}{where}")


class InvalidPayloadFilter(ConfigurationError):
    """A payload search could not be read; write a field path and a value, like `data.customer_id = 42`."""
