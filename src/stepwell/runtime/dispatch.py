"""Which runs an event starts, with every flow-control key evaluated (CEL) before the store writes."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Protocol

import orjson

from stepwell.errors import EventRejected
from stepwell.model.durations import Duration, parse_duration
from stepwell.model.expressions import evaluate
from stepwell.model.flow import FlowOptions
from stepwell.model.ids import new_id
from stepwell.model.matching import canonical_value_at
from stepwell.model.retry import RetryPolicy
from stepwell.store.base import Gate, Gathering, NewRun, NewWait, RunFlow, SlotClaim

PRIORITY_RANGE = (-100, 100)
MAX_KEY_BYTES = 512  # UTF-8 bytes of one evaluated key: keys are stored, indexed and compared per claim


class Routable(Protocol):
    """What deciding a run needs of a function: a FunctionSpec in its own process, or a FunctionDefinition
    read from the registry anywhere else. Both go through `new_run`: one path, one result."""

    @property
    def name(self) -> str: ...

    @property
    def retry(self) -> RetryPolicy: ...

    @property
    def on_failure(self) -> str | None: ...

    @property
    def flow(self) -> FlowOptions | None: ...


def new_run(
    spec: Routable,
    now: datetime,
    *,
    input: bytes | None = None,
    input_name: str | None = None,
    replay_of: str | None = None,
    document: dict[str, Any] | None = None,
    id: str | None = None,
) -> NewRun:
    """`id`: one drawn from the batch's `new_ids` (ingest); by default a fresh `new_id(now)`."""
    options: FlowOptions | None = spec.flow
    flow = priority = None
    if options is not None:
        scope = {
            "event": document
            or {"id": None, "name": input_name, "data": orjson.loads(input or b"{}"), "ts": now.isoformat()}
        }
        flow = run_flow(spec.name, options, scope)
        priority = _priority(options.priority, scope)
    return NewRun(
        id=id or new_id(now),
        function=spec.name,
        max_attempts=spec.retry.max_attempts,
        on_failure=spec.on_failure,
        input=input,
        input_name=input_name,
        replay_of=replay_of,
        priority=priority or 0,
        flow=flow,
    )


def run_flow(function: str, options: FlowOptions, scope: dict[str, Any]) -> RunFlow:
    """Every key of the function's flow control, evaluated against this event; EventRejected when a key
    is longer than MAX_KEY_BYTES (naming the function and the expression), so nothing is written."""

    def key(expression: str | None, option: str) -> str | None:
        return bounded_key(function, option, expression, key_value(expression, scope))

    throttle = options.throttle
    rate = options.rate_limit
    debounce = options.debounce
    batch = options.batch
    origin = orjson.dumps(scope["event"]) if options.cancel_on else b""
    return RunFlow(
        ordering_key=key(options.ordering_key, "ordering_key"),
        park_on_dead_letter=options.on_dead_letter == "park",
        slots=tuple(
            SlotClaim(f"{function}#c{index}", key(limit.key, "concurrency key") or "*", limit.limit)
            for index, limit in enumerate(options.concurrency)
        ),
        throttle=None
        if throttle is None
        else Gate(
            f"{function}#throttle",
            key(throttle.key, "throttle key") or "*",
            throttle.limit,
            _duration(throttle.period),
            throttle.burst or throttle.limit,
        ),
        rate_limit=None
        if rate is None
        else Gate(
            f"{function}#rate",
            key(rate.key, "rate_limit key") or "*",
            rate.limit,
            _duration(rate.period),
            rate.limit,
        ),
        debounce=None
        if debounce is None
        else Gathering(
            key(debounce.key, "debounce key") or "*",
            _duration(debounce.period),
            None if debounce.max_wait is None else _duration(debounce.max_wait),
        ),
        batch=None
        if batch is None
        else Gathering(key(batch.key, "batch key") or "*", _duration(batch.timeout), size=batch.size),
        idempotency_key=key(options.idempotency, "idempotency key"),
        timeout=options.timeout,
        cancel_on=tuple(
            NewWait(
                cancel.event,
                cancel.match,
                None if cancel.match is None else canonical_value_at(scope["event"], cancel.match) or "null",
                cancel.if_,
                origin,
                None,
            )
            for cancel in options.cancel_on
        ),
    )


def bounded_key(function: str, option: str, expression: str | None, key: str | None) -> str | None:
    """`key`, unless it is longer than MAX_KEY_BYTES in UTF-8: then EventRejected, which names the
    function and its key expression (raised while the runs are decided, before anything is written)."""
    if key is None or len(key) <= MAX_KEY_BYTES // 4:  # at most 4 bytes a character: no need to encode
        return key
    size = len(key.encode("utf-8", "surrogatepass"))
    if size > MAX_KEY_BYTES:
        raise EventRejected(
            f"function {function!r}: its {option} {expression!r} evaluated to a key of {size} bytes, over the "
            f"limit of {MAX_KEY_BYTES} bytes (UTF-8); nothing was stored. Key on a shorter field, or send a hash"
        )
    return key


def key_value(expression: str | None, scope: dict[str, Any]) -> str | None:
    """A key as text: strings as they are, anything else as canonical JSON; a missing field is the key 'null'."""
    if expression is None:
        return None
    try:
        value = evaluate(expression, scope)
    except (KeyError, ValueError, TypeError, RuntimeError):
        return "null"
    if isinstance(value, str):
        return value
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _priority(expression: str | None, scope: dict[str, Any]) -> int:
    """The expression's value clamped to -100..100; an expression that fails or is not a number gives 0."""
    if expression is None:
        return 0
    try:
        value = evaluate(expression, scope)
    except (KeyError, ValueError, TypeError, RuntimeError):
        return 0
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return max(PRIORITY_RANGE[0], min(PRIORITY_RANGE[1], int(value)))


def _duration(value: Duration) -> timedelta:
    return parse_duration(value, allow_zero=False)
