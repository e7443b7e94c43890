"""Errors of the HTTP API: one JSON shape, `{code, message, field}`, with the fitting status.

Routes raise `ApiError` for what they refuse themselves; `from_stepwell` maps the App's own errors
(a refused event is 422, a missing run 404, an unreachable database 503 with Retry-After). Anything
else is a bug: it is logged with its traceback and answered with a plain 500 that carries none.

Every error body carries the request's id (`request_id`, also the `X-Request-Id` header). An outage
is answered in general words: the store's own message names the database's host and port, and
readiness answers anyone, so those details go to the log only, under the request id.
"""

from __future__ import annotations

import logging
import re

from stepwell.errors import (
    ConfigurationError,
    EventNotFound,
    EventRejected,
    RunNotFound,
    StepwellError,
    StoreFull,
    StoreUnavailable,
    TimeoutExpired,
    UnknownFunction,
)

log = logging.getLogger("stepwell.http")

RETRY_UNAVAILABLE = 1  # seconds a client waits before retrying when the store is away
RETRY_FULL = 30  # a full disk takes an operator: come back much later


class ApiError(Exception):
    """An answer other than success: status, a stable machine-readable code, a message, the field at fault."""

    def __init__(
        self, status: int, code: str, message: str, field: str | None = None, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field, self.retry_after = status, code, message, field, retry_after

    def body(self, request_id: str) -> dict[str, str | None]:
        return {"code": self.code, "message": self.message, "field": self.field, "request_id": request_id}


def bad_request(message: str, field: str | None = None) -> ApiError:
    return ApiError(400, "bad_request", message, field)


def invalid(message: str, field: str | None = None) -> ApiError:
    return ApiError(422, "invalid", message, field)


_EVENT_INDEX = re.compile(r"^event #(\d+)")


def from_stepwell(err: StepwellError, request_id: str) -> ApiError:
    """The HTTP answer for an error the App raised on purpose."""
    message = str(err)
    if isinstance(err, StoreUnavailable | StoreFull):
        log.warning("request %s: %s", request_id, message)
    if isinstance(err, StoreUnavailable):
        return ApiError(
            503, "store_unavailable",
            f"the database is unavailable; nothing was stored; retry in {RETRY_UNAVAILABLE} s "
            "(the cause is in the server's log under this request_id)",
            retry_after=RETRY_UNAVAILABLE,
        )  # fmt: skip
    if isinstance(err, StoreFull):
        return ApiError(
            503, "store_full",
            "the database is out of space; nothing was stored; an operator must free space "
            "(the cause is in the server's log under this request_id)",
            retry_after=RETRY_FULL,
        )  # fmt: skip
    if isinstance(err, RunNotFound | EventNotFound | UnknownFunction):
        return ApiError(404, "not_found", message)
    if isinstance(err, EventRejected):
        match = _EVENT_INDEX.match(message)
        return ApiError(422, "event_rejected", message, f"[{match.group(1)}]" if match else None)
    if isinstance(err, TimeoutExpired):
        return ApiError(409, "not_finished", message)
    if isinstance(err, ConfigurationError):
        return invalid(message)
    log.error("request %s: unexpected StepwellError from the app: %s", request_id, message, exc_info=err)
    return ApiError(500, "internal", "the server failed; the error is in its log")
