"""Flow-control rules that do not depend on a database: a run's flag bits, the generic cell rate
algorithm over datetimes, and the words a waiting run explains itself with."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson

from stepwell.store.base import Gate, RunFlow

SLOTS, THROTTLE, ORDERED, CANCEL_ON, TIMEOUT, BATCH, DEBOUNCE = 1, 2, 4, 8, 16, 32, 64
GATED = SLOTS | THROTTLE  # admitted at claim time
_MICROSECOND = timedelta(microseconds=1)


def flags(flow: RunFlow | None) -> int:
    if flow is None:
        return 0
    return (
        (SLOTS if flow.slots else 0)
        | (THROTTLE if flow.throttle else 0)
        | (ORDERED if flow.ordering_key else 0)
        | (CANCEL_ON if flow.cancel_on else 0)
        | (TIMEOUT if flow.timeout else 0)
        | (BATCH if flow.batch else 0)
        | (DEBOUNCE if flow.debounce else 0)
    )


def gcra(gate: Gate, tat: datetime, at: datetime) -> tuple[bool, datetime, datetime]:
    """One start against a gate whose theoretical arrival time is `tat`:
    (allowed, the earliest time to try again, the state to store if the start goes ahead)."""
    interval = max(gate.period // gate.limit, _MICROSECOND)
    tolerance = interval * (gate.burst - 1)
    tat = max(tat, at)
    if tat - at > tolerance:
        return False, tat - tolerance, tat
    return True, at, tat + interval


def throttle_json(gate: Gate) -> bytes:
    """A throttle as a run stores it, to apply at each start."""
    period_us = gate.period // _MICROSECOND
    return orjson.dumps(
        {"scope": gate.scope, "key": gate.key, "limit": gate.limit, "period_us": period_us, "burst": gate.burst}
    )


def throttle_gate(data: bytes) -> Gate:
    spec = orjson.loads(data)
    return Gate(spec["scope"], spec["key"], spec["limit"], timedelta(microseconds=spec["period_us"]), spec["burst"])


@dataclass(frozen=True, slots=True)
class Waiting:
    """What a not-yet-started (or suspended) run is waiting on, as a store reads it."""

    status: str
    hold: str | None
    note: str | None
    ordering_key: str | None
    available_at: datetime
    attempt: int
    later: bool  # available_at is after now
    forever: bool  # available_at means "until woken"
    key_head: str | None = None
    key_paused: bool = False
    key_parked: bool = False
    slot: tuple[str, str, int, int] | None = None  # (scope, key, limit, in use) of the slot it waits for
    wait_event: str | None = None  # the event a waiting step waits for
    function: str | None = None
    function_paused: bool = False  # its function is paused (set_function_paused)


def waiting_reason(w: Waiting) -> str | None:
    """Why the run has not started (or resumed), in the words `Run.waiting_reason` uses."""
    when = w.available_at.isoformat()
    if w.function_paused and (w.status == "queued" or (w.status in ("sleeping", "waiting") and not w.later)):
        return f"function {w.function} is paused"  # first: nothing of it starts before it is resumed
    if w.status == "queued":
        if w.hold in ("ordering", "paused", "parked"):
            if w.key_paused:
                return f"ordering key {w.ordering_key} is paused"
            if w.key_parked:
                return f"ordering key {w.ordering_key} is parked behind dead letter {w.key_head}"
            return f"ordering key {w.ordering_key} busy with run {w.key_head}"
        if w.hold == "concurrency":
            if w.slot is not None:
                scope, key, limit, in_use = w.slot
                return f"concurrency {scope}[{key}] at {in_use}/{limit}"
            return "waiting for a concurrency slot"
        if w.later:
            if w.note == "throttled":
                return f"throttled until {when}"
            if w.note == "debounced":
                return f"debouncing until {when}"
            if w.note == "batching":
                return f"batch filling until {when}"
            if w.attempt > 1:
                return f"attempt {w.attempt} scheduled at {when}"
            return f"scheduled at {when}"
        return "ready: waiting for a free worker"
    if w.status == "sleeping":
        return f"sleeping until {when}"
    if w.status == "waiting":
        what = f"event {w.wait_event}" if w.wait_event else "its child runs"
        return f"waiting for {what}" + ("" if w.forever else f" until {when}")
    return None
