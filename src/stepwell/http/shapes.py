"""The JSON shapes of the API: records out (runs, steps, events, dead letters, functions, keys) and
checked inputs in (events, filters, cursors, times). Pure functions: no App, no I/O."""

from __future__ import annotations

import base64
import dataclasses
import enum
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import orjson

from stepwell.http.errors import bad_request, invalid
from stepwell.model.apikeys import ApiKey
from stepwell.model.event import EventIn
from stepwell.model.records import DeadLetter, ErrorInfo, EventRecord, FanOutCounts, Run, RunStatus, Step
from stepwell.store.base import RegisteredFunction, RunLogLine, RunLogs

_EVENT_FIELDS = frozenset({"name", "data", "id", "ts"})

# records out


def when(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def error_json(error: ErrorInfo | None) -> dict[str, Any] | None:
    return None if error is None else error.to_json()


def step_json(step: Step) -> dict[str, Any]:
    return {
        "id": step.id,
        "kind": step.kind.value,
        "status": step.status.value,
        "attempts": step.attempts,
        "output": step.output,
        "error": error_json(step.error),
        "started_at": when(step.started_at),
        "ended_at": when(step.ended_at),
        "wake_at": when(step.wake_at),
    }


def run_json(
    run: Run, input: tuple[str, Any] | None = None, *, detail: bool = False, logs: RunLogs | None = None
) -> dict[str, Any]:
    """A run; with `detail`, its steps, every attempt's error, its input, why it waits and its ctx.log lines."""
    shape: dict[str, Any] = {
        "id": run.id,
        "function": run.function,
        "status": run.status.value,
        "attempt": run.attempt,
        "max_attempts": run.max_attempts,
        "event_id": run.event_id,
        "parent_id": run.parent_id,
        "replay_of": run.replay_of,
        "ordering_key": run.ordering_key,
        "created_at": when(run.created_at),
        "started_at": when(run.started_at),
        "ended_at": when(run.ended_at),
        "available_at": when(run.available_at),
        "output": run.output,
        "error": error_json(run.error),
    }
    if detail:
        shape["waiting_reason"] = run.waiting_reason
        shape["steps"] = [step_json(step) for step in run.steps]
        shape["errors"] = [error.to_json() for error in run.errors]
        shape["input"] = None if input is None else {"name": input[0], "data": input[1]}
        shape["logs"] = [] if logs is None else [log_line_json(line) for line in logs.lines]
        shape["logs_dropped"] = 0 if logs is None else logs.dropped
    return shape


def log_line_json(line: RunLogLine) -> dict[str, Any]:
    return {
        "at": when(line.at),
        "level": line.level,
        "step": line.step,
        "attempt": line.attempt,
        "message": line.message,
    }


def event_json(record: EventRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "name": record.name,
        "data": record.data,
        "ts": when(record.ts),
        "received_at": when(record.received_at),
        "disposition": record.disposition.value,
        "run_ids": list(record.run_ids),
        "skipped": [{"function": fn, "reason": reason, "run_id": run} for fn, reason, run in record.skipped],
    }


def dead_letter_json(entry: DeadLetter) -> dict[str, Any]:
    return {
        "run_id": entry.run_id,
        "function": entry.function,
        "error": entry.error.to_json(),
        "reason": entry.reason.value,
        "failed_at": when(entry.failed_at),
        "attempts": entry.attempts,
        "redrive_count": entry.redrive_count,
        "ordering_key": entry.ordering_key,
        "key_policy": entry.key_policy,
    }


def fan_out_json(counts: FanOutCounts) -> dict[str, Any]:
    return {
        "total": counts.total,
        "created": counts.created,
        "queued": counts.queued,
        "running": counts.running,
        "completed": counts.completed,
        "failed": counts.failed,
        "cancelled": counts.cancelled,
        "finished": counts.finished,
        "done": counts.done,
    }


def function_json(function: RegisteredFunction) -> dict[str, Any]:
    """A registry row: the app, the name, the version and the whole stored definition (triggers, options)."""
    return {
        "app": function.app,
        "name": function.name,
        "version": function.version,
        "definition": orjson.loads(function.definition),
        "registered_at": when(function.registered_at),
        "updated_at": when(function.updated_at),
        "retired_at": when(function.retired_at),
        "paused_at": when(function.paused_at),
    }


def api_key_json(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "name": key.name,
        "scopes": sorted(scope.value for scope in key.scopes),
        "created_at": when(key.created_at),
        "revoked_at": when(key.revoked_at),
    }


def _plain(value: Any) -> Any:
    """Options as JSON: dataclasses as objects without their unset (None) fields, durations in seconds."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = ((f.name, getattr(value, f.name)) for f in dataclasses.fields(value) if not f.name.startswith("_"))
        return {name: _plain(item) for name, item in fields if item is not None and item != ()}
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


# inputs in


def events_in(body: Any, max_batch: int) -> tuple[list[EventIn], bool]:
    """The events of a POST /events body: one object, or an array of 1 to `max_batch` of them.

    Returns the events and whether the body was an array. The App checks names, ids and sizes."""
    if isinstance(body, dict):
        return [_event_in(body, None)], False
    if not isinstance(body, list):
        raise invalid("send one event object {name, data, id?, ts?} or an array of them", "body")
    if not body:
        raise invalid("the array of events is empty", "body")
    if len(body) > max_batch:
        raise invalid(f"{len(body)} events in one request, over the limit of {max_batch}; split the batch", "body")
    return [_event_in(item, index) for index, item in enumerate(body)], True


def _event_in(item: Any, index: int | None) -> EventIn:
    where = "" if index is None else f"[{index}]"
    if not isinstance(item, dict):
        raise invalid(f"event {where or ''} must be an object with name, data, id?, ts?".replace("  ", " "), where)
    unknown = sorted(set(item) - _EVENT_FIELDS)
    if unknown:
        raise invalid(f"unknown field {unknown[0]!r}; an event has name, data, id, ts", f"{where}.{unknown[0]}")
    if not isinstance(item.get("name"), str):
        raise invalid("name is required and must be a string", f"{where}.name".lstrip("."))
    event_id = item.get("id")
    if event_id is not None and not isinstance(event_id, str):
        raise invalid("id must be a string", f"{where}.id".lstrip("."))
    data = item.get("data")
    if data is not None and not isinstance(data, dict):
        raise invalid("data must be an object (or null, meaning {}), as app.send requires", f"{where}.data".lstrip("."))
    ts = item.get("ts")
    moment = None if ts is None else timestamp(ts, f"{where}.ts".lstrip("."))
    return EventIn(item["name"], data, event_id, moment)


def timestamp(value: Any, field: str) -> datetime:
    """An RFC 3339 time with its offset ('2030-01-01T00:00:00Z'); a naive time is ambiguous and refused."""
    if not isinstance(value, str) or len(value) > 64:
        raise invalid("must be an RFC 3339 time string such as 2030-01-01T12:00:00Z", field)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise invalid(f"{value!r} is not an RFC 3339 time such as 2030-01-01T12:00:00Z", field) from None
    if moment.tzinfo is None:
        raise invalid(f"{value!r} has no UTC offset; add Z or +HH:MM", field)
    return moment


def text(params: Mapping[str, Any], name: str, max_length: int) -> str | None:
    """An optional string parameter (query or body), at most `max_length` characters, printable."""
    value = params.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > max_length or not value.isprintable():
        raise invalid(f"must be a printable string of 1-{max_length} characters", name)
    return value


def required_text(params: Mapping[str, Any], name: str, max_length: int) -> str:
    value = text(params, name, max_length)
    if value is None:
        raise invalid("is required", name)
    return value


def integer(params: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = params.get(name)
    if value is None:
        return default
    if isinstance(value, str):
        if not value.isdigit() or len(value) > 12:
            raise invalid(f"must be an integer from {low} to {high}", name)
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise invalid(f"must be an integer from {low} to {high}", name)
    return value


def seconds(params: Mapping[str, Any], name: str, default: float, high: float) -> float:
    value = params.get(name)
    if value is None:
        return default
    try:
        number = float(value) if isinstance(value, str | int | float) and not isinstance(value, bool) else -1.0
    except ValueError:
        number = -1.0
    if not 0 <= number <= high:  # NaN fails this too
        raise invalid(f"must be a number of seconds from 0 to {high:g}", name)
    return number


def status(params: Mapping[str, Any]) -> RunStatus | None:
    value = params.get("status")
    if value is None:
        return None
    try:
        return RunStatus(value)
    except ValueError:
        raise invalid(f"must be one of {[s.value for s in RunStatus]}", "status") from None


def optional_time(params: Mapping[str, Any], name: str) -> datetime | None:
    value = params.get(name)
    return None if value is None else timestamp(value, name)


def string_list(params: Mapping[str, Any], name: str, max_items: int, max_length: int) -> list[str]:
    value = params.get(name, [])
    if not isinstance(value, list) or len(value) > max_items:
        raise invalid(f"must be an array of at most {max_items} strings", name)
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item or len(item) > max_length or not item.isprintable():
            raise invalid(f"must be a printable string of 1-{max_length} characters", f"{name}[{index}]")
    return value


def object_body(body: Any, allowed: frozenset[str]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise invalid("the body must be a JSON object", "body")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise invalid(f"unknown field {unknown[0]!r}; this body takes {sorted(allowed)}", unknown[0])
    return body


def encode_cursor(run: Run) -> str:
    """Where the next page starts: after this run, in the list's order (newest first)."""
    return encode_cursor_at(run.created_at, run.id)


def encode_cursor_at(created_at: datetime, run_id: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([created_at.isoformat(), run_id])).decode().rstrip("=")


def decode_cursor(value: str | None) -> tuple[datetime, str] | None:
    if value is None:
        return None
    try:
        created, run_id = orjson.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
        moment = datetime.fromisoformat(created)
        if not isinstance(run_id, str) or moment.tzinfo is None:
            raise ValueError(value)
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise bad_request("cursor is not one this server gave out; start again without it", "cursor") from None
    return moment, run_id
