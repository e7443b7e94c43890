"""Turning a user's exception into a stored ErrorInfo, whatever it does to resist."""

from __future__ import annotations

import traceback

from stepwell.model.records import ErrorInfo

MAX_MESSAGE = 8 * 1024
MAX_TRACEBACK = 32 * 1024


def error_info(error: BaseException, *, step: str | None = None) -> ErrorInfo:
    return ErrorInfo(
        type=_qualified_name(type(error)),
        message=_truncate(_safe_str(error), MAX_MESSAGE),
        traceback=_truncate(_safe_traceback(error), MAX_TRACEBACK),
        step=step,
    )


def _qualified_name(kind: type) -> str:
    module = getattr(kind, "__module__", "")
    name = getattr(kind, "__qualname__", kind.__name__)
    return name if module in ("builtins", "") else f"{module}.{name}"


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
