"""The run that a final failure starts for a function's `on_failure` handler.

Written in the same transaction as the failure, so a handler can never be lost or doubled.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from stepwell.model.ids import new_id
from stepwell.model.records import ErrorInfo
from stepwell.store.base import NewRun

FAILURE_EVENT = "stepwell/function.failed"
FAILURE_HANDLER_ATTEMPTS = 4  # the default policy: 3 retries


def failure_handler_input(
    *, run_id: str, function: str, handler: str, error: ErrorInfo, event_name: str, event_data: Any, now: datetime
) -> NewRun:
    data = {
        "run_id": run_id,
        "function": function,
        "error": error.to_json(),
        "event": {"name": event_name, "data": event_data},
    }
    return NewRun(
        id=new_id(now),
        function=handler,
        max_attempts=FAILURE_HANDLER_ATTEMPTS,
        input=orjson.dumps(data),
        input_name=FAILURE_EVENT,
        parent_id=None,
    )
