"""Turning stored columns back into model values; shared by both backends."""

from __future__ import annotations

from typing import Any

import orjson

from stepwell.model.records import ErrorInfo, Step, StepKind, StepStatus


def json_or_none(data: bytes | str | memoryview | None) -> Any:
    if data is None:
        return None
    return orjson.loads(bytes(data) if isinstance(data, memoryview) else data)


def error_or_none(data: bytes | str | memoryview | None) -> ErrorInfo | None:
    return ErrorInfo.from_json(json_or_none(data))


def error_required(data: bytes | str | memoryview) -> ErrorInfo:
    error = error_or_none(data)
    if error is None:
        raise ValueError("a stored error is empty")
    return error


def error_bytes(error: ErrorInfo | None) -> bytes | None:
    return None if error is None else orjson.dumps(error.to_json())


def step_from_row(row: Any, to_time: Any) -> Step:
    """Columns: id, kind, status, attempts, output, error, started_at, ended_at, wake_at, position."""
    step_id, kind, status, attempts, output, error, started_at, ended_at, wake_at, position = row
    return Step(
        id=step_id,
        kind=StepKind(kind),
        status=StepStatus(status),
        attempts=attempts,
        output=json_or_none(output),
        error=error_or_none(error),
        started_at=to_time(started_at),
        ended_at=to_time(ended_at),
        wake_at=to_time(wake_at),
        position=position,
    )
