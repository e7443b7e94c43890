"""The push protocol: the JSON documents the dispatcher POSTs and the endpoint answers. Pure.

Close to Inngest's step protocol: the request carries the run, its event(s) and every memoized
step with its result as data or error keyed by step id; the endpoint replays the function and
answers with what happened. **One new step per request**: the endpoint stops the function as
soon as a step's result is new (`checkpoint`), the dispatcher stores it under the run's lease,
and only then asks again with that step memoized. So a completed step is durable before the
function goes past it, and a crash of the web app at any moment re-executes at most the step in
flight. Parallel steps do not exist in the step API, so there is nothing to plan ahead.

A response is a list of `ops` (store writes, in call order, each named after the store verb it
becomes), the replay's `ctx.log` lines (`logs`, keyed as a pulled attempt keys them, so that a
replay's line is stored once) and one `result`: `checkpoint` (ask again), `suspend` (sleep, wait for an event, an
invoke or a fan-out), `read_children` (the function reads a finished fan-out's children, `FanOut.results()`:
store the ops, then ask again with that step's children in `fan_out_children`), `complete` (the
function's output) or `fail` (retriable or not, `retry_after_ms`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson

from stepwell.errors import StepwellError
from stepwell.model.records import ChildResult, ErrorInfo, Event, FanOutCounts, RunStatus, Step, StepKind, StepStatus
from stepwell.store.base import ClaimedRun, Lease, NewChild, NewRun, NewWait, RunLogLine, StepWrite

PROTOCOL = "stepwell.push/1"
Document = dict[str, Any]


class ProtocolError(StepwellError):
    """A push document is malformed; it names the field that was wrong."""


# --- values ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PushRequest:
    claimed: ClaimedRun
    fan_outs: Mapping[str, FanOutCounts] = field(default_factory=dict)  # counts of waiting fan-out steps
    children: Mapping[str, tuple[ChildResult, ...]] = field(default_factory=dict)  # of finished fan-outs, asked for


@dataclass(frozen=True, slots=True)
class RecordStep:
    step: StepWrite


@dataclass(frozen=True, slots=True)
class RegisterWait:
    step: StepWrite
    wait: NewWait


@dataclass(frozen=True, slots=True)
class StartChild:
    step: StepWrite
    child: NewChild


@dataclass(frozen=True, slots=True)
class TimeOutStep:
    step_id: str
    error: ErrorInfo | None


@dataclass(frozen=True, slots=True)
class OpenFanOut:
    step: StepWrite
    function: str
    tolerate: float


@dataclass(frozen=True, slots=True)
class CreateChildren:
    step_id: str
    children: tuple[NewChild, ...]


@dataclass(frozen=True, slots=True)
class SealFanOut:
    step_id: str
    total: int


@dataclass(frozen=True, slots=True)
class SendEvents:
    events: tuple[tuple[str, str, Any], ...]  # (id, name, data)


Op = RecordStep | RegisterWait | StartChild | TimeOutStep | OpenFanOut | CreateChildren | SealFanOut | SendEvents


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A new step result was recorded: store the ops and ask again."""


@dataclass(frozen=True, slots=True)
class Suspended:
    until: datetime | None
    waiting: bool


@dataclass(frozen=True, slots=True)
class Completed:
    output: bytes  # JSON


@dataclass(frozen=True, slots=True)
class Failed:
    error: ErrorInfo
    retriable: bool
    retry_after: timedelta | None = None


@dataclass(frozen=True, slots=True)
class ReadChildren:
    """The function reads the children of the finished fan-out `step_id`: store the ops, then ask again
    with every child of that step in the request."""

    step_id: str


Result = Checkpoint | Suspended | Completed | Failed | ReadChildren


@dataclass(frozen=True, slots=True)
class PushResponse:
    ops: tuple[Op, ...]
    result: Result
    logs: tuple[RunLogLine, ...] = ()  # ctx.log lines of this replay, keyed as a pulled attempt keys them


# --- small codecs ---------------------------------------------------------------------------


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _parse_time(value: object, where: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ProtocolError(f"{where}: expected an ISO 8601 time, got {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ProtocolError(f"{where}: {value[:40]!r} is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise ProtocolError(f"{where}: {value[:40]!r} has no time zone")
    return parsed


def _micros(value: timedelta | None) -> int | None:
    return None if value is None else value // timedelta(microseconds=1)


def _delta(value: object, where: str) -> timedelta | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise ProtocolError(f"{where}: expected whole microseconds")
    return timedelta(microseconds=value)


def _get(doc: object, key: str, kind: type | tuple[type, ...], where: str, *, optional: bool = False) -> Any:
    if not isinstance(doc, dict):
        raise ProtocolError(f"{where}: expected an object")
    value = doc.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise ProtocolError(f"{where}.{key}: missing or not a {getattr(kind, '__name__', kind)}")
    return value


def _json(data: bytes | None) -> Any:
    return None if data is None else orjson.loads(data)


def _bytes(value: Any) -> bytes:
    return orjson.dumps(value)


def _error(doc: object, where: str) -> ErrorInfo | None:
    if doc is None:
        return None
    kind = _get(doc, "type", str, where)
    message = _get(doc, "message", str, where)
    trace = _get(doc, "traceback", str, where, optional=True) or ""
    step = _get(doc, "step", str, where, optional=True)
    return ErrorInfo(kind, message, trace, step)


def _event_doc(event: Event) -> Document:
    return {"id": event.id, "name": event.name, "data": event.data, "ts": _time(event.ts)}


def _event(doc: object, where: str) -> Event:
    ts = _parse_time(_get(doc, "ts", str, where, optional=True), f"{where}.ts")
    assert isinstance(doc, dict)
    return Event(_get(doc, "id", str, where, optional=True), _get(doc, "name", str, where), doc.get("data"), ts)  # type: ignore[arg-type]


def _step_doc(step: Step) -> Document:
    doc: Document = {
        "id": step.id,
        "position": step.position,
        "kind": step.kind.value,
        "status": step.status.value,
        "attempts": step.attempts,
        "wake_at": _time(step.wake_at),
    }
    if step.error is not None:
        doc["error"] = step.error.to_json()
    else:
        doc["data"] = step.output
    return doc


def _enum(enum: Any, value: object, where: str) -> Any:
    try:
        return enum(value)
    except ValueError:
        raise ProtocolError(f"{where}: unknown value {value!r}") from None


def _step(doc: object, where: str) -> Step:
    assert_object(doc, where)
    assert isinstance(doc, dict)
    return Step(
        id=_get(doc, "id", str, where),
        kind=_enum(StepKind, doc.get("kind"), f"{where}.kind"),
        status=_enum(StepStatus, doc.get("status"), f"{where}.status"),
        attempts=_get(doc, "attempts", int, where),
        output=doc.get("data"),
        error=_error(doc.get("error"), f"{where}.error"),
        wake_at=_parse_time(doc.get("wake_at"), f"{where}.wake_at"),
        position=_get(doc, "position", int, where),
    )


def assert_object(doc: object, where: str) -> None:
    if not isinstance(doc, dict):
        raise ProtocolError(f"{where}: expected an object")


def _write_doc(write: StepWrite) -> Document:
    return {
        "id": write.step_id,
        "position": write.position,
        "kind": write.kind.value,
        "status": write.status.value,
        "data": _json(write.output),
        "has_data": write.output is not None,
        "error": None if write.error is None else write.error.to_json(),
        "wake_at": _time(write.wake_at),
        "sleep_for_us": _micros(write.sleep_for),
        "started_at": _time(write.started_at),
    }


def _write(doc: object, where: str) -> StepWrite:
    assert_object(doc, where)
    assert isinstance(doc, dict)
    return StepWrite(
        step_id=_get(doc, "id", str, where),
        position=_get(doc, "position", int, where),
        kind=_enum(StepKind, doc.get("kind"), f"{where}.kind"),
        status=_enum(StepStatus, doc.get("status"), f"{where}.status"),
        output=_bytes(doc.get("data")) if doc.get("has_data") else None,
        error=_error(doc.get("error"), f"{where}.error"),
        wake_at=_parse_time(doc.get("wake_at"), f"{where}.wake_at"),
        sleep_for=_delta(doc.get("sleep_for_us"), f"{where}.sleep_for_us"),
        started_at=_parse_time(doc.get("started_at"), f"{where}.started_at"),
    )


def _child_doc(child: NewChild) -> Document:
    run = child.run
    return {
        "id": run.id,
        "function": run.function,
        "max_attempts": run.max_attempts,
        "on_failure": run.on_failure,
        "input": _json(run.input),
        "input_name": run.input_name,
        "index": child.index,
    }


def _child(doc: object, where: str, parent_id: str) -> NewChild:
    assert_object(doc, where)
    assert isinstance(doc, dict)
    run = NewRun(
        id=_get(doc, "id", str, where),
        function=_get(doc, "function", str, where),
        max_attempts=_get(doc, "max_attempts", int, where),
        on_failure=_get(doc, "on_failure", str, where, optional=True),
        input=_bytes(doc.get("input")),
        input_name=_get(doc, "input_name", str, where, optional=True),
        parent_id=parent_id,  # never what the document says: a child belongs to the run that was pushed
    )
    return NewChild(run, _get(doc, "index", int, where, optional=True))


def _wait_doc(wait: NewWait) -> Document:
    return {
        "event": wait.event_name,
        "match_path": wait.match_path,
        "match_value": wait.match_value,
        "condition": wait.condition,
        "origin": _json(wait.origin),
        "timeout_us": _micros(wait.timeout),
    }


def _wait(doc: object, where: str) -> NewWait:
    assert_object(doc, where)
    assert isinstance(doc, dict)
    return NewWait(
        event_name=_get(doc, "event", str, where),
        match_path=_get(doc, "match_path", str, where, optional=True),
        match_value=_get(doc, "match_value", str, where, optional=True),
        condition=_get(doc, "condition", str, where, optional=True),
        origin=_bytes(doc.get("origin")),
        timeout=_delta(doc.get("timeout_us"), f"{where}.timeout_us"),
    )


def _counts_doc(counts: FanOutCounts) -> Document:
    return {
        "total": counts.total,
        "queued": counts.queued,
        "running": counts.running,
        "completed": counts.completed,
        "failed": counts.failed,
        "cancelled": counts.cancelled,
        "done": counts.done,
    }


def _counts(doc: object, where: str) -> FanOutCounts:
    assert_object(doc, where)
    assert isinstance(doc, dict)
    numbers = {k: _get(doc, k, int, where) for k in ("queued", "running", "completed", "failed", "cancelled")}
    return FanOutCounts(total=_get(doc, "total", int, where, optional=True), done=bool(doc.get("done")), **numbers)


def children_doc(children: tuple[ChildResult, ...]) -> list[Document]:
    docs: list[Document] = []
    for child in children:
        doc: Document = {"index": child.index, "run_id": child.run_id, "status": child.status.value}
        if child.error is not None:
            doc["error"] = child.error.to_json()
        else:
            doc["data"] = child.output
        docs.append(doc)
    return docs


def _children(docs: object, where: str) -> tuple[ChildResult, ...]:
    if not isinstance(docs, list):
        raise ProtocolError(f"{where}: expected a list")
    children = []
    for i, doc in enumerate(docs):
        at = f"{where}[{i}]"
        assert_object(doc, at)
        assert isinstance(doc, dict)
        children.append(
            ChildResult(
                index=_get(doc, "index", int, at),
                run_id=_get(doc, "run_id", str, at),
                status=_enum(RunStatus, doc.get("status"), f"{at}.status"),
                output=doc.get("data"),
                error=_error(doc.get("error"), f"{at}.error"),
            )
        )
    return tuple(children)


# --- requests -------------------------------------------------------------------------------


def encode_request(request: PushRequest) -> bytes:
    claimed = request.claimed
    doc = {
        "protocol": PROTOCOL,
        "run": {
            "id": claimed.run_id,
            "function": claimed.function,
            "attempt": claimed.attempt,
            "max_attempts": claimed.max_attempts,
            "lease_token": claimed.lease.token,
            "lease_expires_at": _time(claimed.lease.expires_at),
            "claimed_at": _time(claimed.claimed_at),
        },
        "event": _event_doc(claimed.event),
        "events": [_event_doc(event) for event in claimed.events],
        "steps": [_step_doc(step) for step in claimed.steps],
        "fan_outs": {sid: _counts_doc(counts) for sid, counts in request.fan_outs.items()},
    }
    if request.children:
        doc["fan_out_children"] = {sid: children_doc(children) for sid, children in request.children.items()}
    return orjson.dumps(doc)


def decode_request(body: bytes) -> PushRequest:
    doc = _load(body, "request")
    run = _get(doc, "run", dict, "request")
    expires = _parse_time(_get(run, "lease_expires_at", str, "run"), "run.lease_expires_at")
    claimed_at = _parse_time(_get(run, "claimed_at", str, "run"), "run.claimed_at")
    assert expires is not None and claimed_at is not None
    steps = _get(doc, "steps", list, "request")
    events = _get(doc, "events", list, "request")
    fan_outs = _get(doc, "fan_outs", dict, "request")
    claimed = ClaimedRun(
        lease=Lease(_get(run, "id", str, "run"), _get(run, "lease_token", str, "run"), expires),
        function=_get(run, "function", str, "run"),
        attempt=_get(run, "attempt", int, "run"),
        max_attempts=_get(run, "max_attempts", int, "run"),
        event=_event(doc.get("event"), "event"),
        claimed_at=claimed_at,
        steps=tuple(_step(step, f"steps[{i}]") for i, step in enumerate(steps)),
        events=tuple(_event(event, f"events[{i}]") for i, event in enumerate(events)),
    )
    children = _get(doc, "fan_out_children", dict, "request", optional=True) or {}
    return PushRequest(
        claimed,
        {str(k): _counts(v, f"fan_outs.{k}") for k, v in fan_outs.items()},
        {str(k): _children(v, f"fan_out_children.{k}") for k, v in children.items()},
    )


def _load(body: bytes, what: str) -> Document:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise ProtocolError(f"{what}: not JSON ({error})") from None
    if not isinstance(doc, dict):
        raise ProtocolError(f"{what}: expected a JSON object")
    if doc.get("protocol") != PROTOCOL:
        raise ProtocolError(f"{what}: protocol {doc.get('protocol')!r} is not {PROTOCOL!r}")
    return doc


# --- responses ------------------------------------------------------------------------------


def _op_doc(op: Op) -> Document:
    match op:
        case RecordStep(step):
            return {"op": "record_step", "step": _write_doc(step)}
        case RegisterWait(step, wait):
            return {"op": "register_wait", "step": _write_doc(step), "wait": _wait_doc(wait)}
        case StartChild(step, child):
            return {"op": "start_child", "step": _write_doc(step), "child": _child_doc(child)}
        case TimeOutStep(step_id, error):
            return {"op": "time_out_step", "step_id": step_id, "error": None if error is None else error.to_json()}
        case OpenFanOut(step, function, tolerate):
            return {"op": "open_fan_out", "step": _write_doc(step), "function": function, "tolerate": tolerate}
        case CreateChildren(step_id, children):
            return {"op": "create_children", "step_id": step_id, "children": [_child_doc(c) for c in children]}
        case SealFanOut(step_id, total):
            return {"op": "seal_fan_out", "step_id": step_id, "total": total}
        case SendEvents(events):
            return {"op": "send_events", "events": [{"id": i, "name": n, "data": d} for i, n, d in events]}
    raise AssertionError(op)


def _op(doc: object, where: str, run_id: str) -> Op:
    name = _get(doc, "op", str, where)
    assert isinstance(doc, dict)
    if name == "record_step":
        return RecordStep(_write(doc.get("step"), f"{where}.step"))
    if name == "register_wait":
        return RegisterWait(_write(doc.get("step"), f"{where}.step"), _wait(doc.get("wait"), f"{where}.wait"))
    if name == "start_child":
        return StartChild(_write(doc.get("step"), f"{where}.step"), _child(doc.get("child"), f"{where}.child", run_id))
    if name == "time_out_step":
        return TimeOutStep(_get(doc, "step_id", str, where), _error(doc.get("error"), f"{where}.error"))
    if name == "open_fan_out":
        tolerate = _get(doc, "tolerate", (int, float), where)
        return OpenFanOut(_write(doc.get("step"), f"{where}.step"), _get(doc, "function", str, where), float(tolerate))
    if name == "create_children":
        children = _get(doc, "children", list, where)
        parsed = tuple(_child(c, f"{where}.children[{i}]", run_id) for i, c in enumerate(children))
        return CreateChildren(_get(doc, "step_id", str, where), parsed)
    if name == "seal_fan_out":
        return SealFanOut(_get(doc, "step_id", str, where), _get(doc, "total", int, where))
    if name == "send_events":
        events = _get(doc, "events", list, where)
        return SendEvents(
            tuple(
                (
                    _get(e, "id", str, f"{where}.events[{i}]"),
                    _get(e, "name", str, f"{where}.events[{i}]"),
                    e.get("data"),
                )
                for i, e in enumerate(events)
            )
        )
    raise ProtocolError(f"{where}.op: unknown op {name!r}")


def _result_doc(result: Result) -> Document:
    match result:
        case Checkpoint():
            return {"type": "checkpoint"}
        case Suspended(until, waiting):
            return {"type": "suspend", "until": _time(until), "waiting": waiting}
        case Completed(output):
            return {"type": "complete", "output": _json(output)}
        case Failed(error, retriable, retry_after):
            delay = None if retry_after is None else int(retry_after.total_seconds() * 1000)
            return {"type": "fail", "error": error.to_json(), "retriable": retriable, "retry_after_ms": delay}
        case ReadChildren(step_id):
            return {"type": "read_children", "step_id": step_id}
    raise AssertionError(result)


def _result(doc: object, where: str) -> Result:
    kind = _get(doc, "type", str, where)
    assert isinstance(doc, dict)
    if kind == "checkpoint":
        return Checkpoint()
    if kind == "suspend":
        return Suspended(_parse_time(doc.get("until"), f"{where}.until"), bool(doc.get("waiting")))
    if kind == "complete":
        return Completed(_bytes(doc.get("output")))
    if kind == "fail":
        error = _error(doc.get("error"), f"{where}.error")
        if error is None:
            raise ProtocolError(f"{where}.error: missing")
        delay = _get(doc, "retry_after_ms", int, where, optional=True)
        after = None if delay is None else timedelta(milliseconds=delay)
        return Failed(error, bool(doc.get("retriable")), after)
    if kind == "read_children":
        return ReadChildren(_get(doc, "step_id", str, where))
    raise ProtocolError(f"{where}.type: unknown result {kind!r}")


def _line_doc(line: RunLogLine) -> Document:
    return {
        "segment": line.segment,
        "attempt": line.attempt,
        "seq": line.seq,
        "at": _time(line.at),
        "level": line.level,
        "message": line.message,
        "step": line.step,
    }


def _line(doc: object, where: str, run_id: str) -> RunLogLine:
    at = _parse_time(_get(doc, "at", str, where), f"{where}.at")
    assert at is not None
    return RunLogLine(
        run_id,  # never what the document says: the lines belong to the run that was pushed
        _get(doc, "segment", int, where),
        _get(doc, "attempt", int, where),
        _get(doc, "seq", int, where),
        at,
        _get(doc, "level", str, where),
        _get(doc, "message", str, where),
        _get(doc, "step", str, where, optional=True),
    )


def encode_response(response: PushResponse) -> bytes:
    doc: Document = {
        "protocol": PROTOCOL,
        "ops": [_op_doc(op) for op in response.ops],
        "result": _result_doc(response.result),
    }
    if response.logs:
        doc["logs"] = [_line_doc(line) for line in response.logs]
    return orjson.dumps(doc)


def decode_response(body: bytes, run_id: str) -> PushResponse:
    """`run_id`: the run that was pushed; every child and log line in the response is that run's."""
    doc = _load(body, "response")
    ops = _get(doc, "ops", list, "response")
    lines = _get(doc, "logs", list, "response", optional=True) or []
    return PushResponse(
        tuple(_op(op, f"ops[{i}]", run_id) for i, op in enumerate(ops)),
        _result(doc.get("result"), "result"),
        tuple(_line(line, f"logs[{i}]", run_id) for i, line in enumerate(lines)),
    )
