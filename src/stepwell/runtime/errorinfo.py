"""Turning a user's exception into a stored ErrorInfo, whatever it does to resist."""

from __future__ import annotations

import traceback

from stepwell.errors import StepError
from stepwell.model.records import ErrorInfo

MAX_MESSAGE = 8 * 1024
MAX_TRACEBACK = 32 * 1024


def error_info(error: BaseException, *, step: str | None = None) -> ErrorInfo:
    """The stored form of `error`; `str()` of it reads `Type in step 'x': message` (or `Type: message`).

    A step's failure replayed (StepError) is recorded as the step's own error, and an invoke's or a
    fan-out's failure names its step once, so no message repeats its type or its step.
    """
    kind, message = type_name(type(error)), _safe_str(error)
    if isinstance(error, StepError):
        step = error.step_id
        if type(error) is StepError:
            kind, message = error.error_type, error.error_message
        elif error.error_type == kind:
            message = error.error_message
        else:
            message = f"{error.error_type}: {error.error_message}"
    return ErrorInfo(
        type=kind,
        message=_truncate(message, MAX_MESSAGE),
        traceback=_truncate(_safe_traceback(error), MAX_TRACEBACK),
        step=step,
    )


def type_name(kind: type) -> str:
    """The name a user catches the error by: bare for builtins and Stepwell's errors (all exported by
    `stepwell`), module-qualified for the user's own classes (`billing.PaymentDeclined`)."""
    module = getattr(kind, "__module__", "") or ""
    name = getattr(kind, "__qualname__", kind.__name__)
    return (
        name if module == "builtins" or module == "stepwell" or module.startswith("stepwell.") else f"{module}.{name}"
    )


def _safe_str(error: BaseException) -> str:
    """Even a `__str__` raising KeyboardInterrupt or SystemExit must not stop the failed step's row
    from being written: it is user code's exception, not a signal to this process."""
    try:
        return str(error)
    except BaseException as err:  # noqa: BLE001 - a hostile __str__ must not take the worker down
        return f"<str() of the exception raised {type(err).__name__}>"


def _safe_traceback(error: BaseException) -> str:
    try:
        return "".join(traceback.format_exception(type(error), error, error.__traceback__))
    except BaseException:  # noqa: BLE001 - formatting calls the same hostile __str__
        return "<traceback could not be formatted>"


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"... [truncated {len(text) - limit} characters]"
