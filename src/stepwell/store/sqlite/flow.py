"""The SQLite side of flow control: admitting picked runs to start (concurrency slots, throttle),
what a run that stops running or ends sets in motion (slots handed to waiting runs, its ordering
key handed on, or parked), operating a key, and why a run waits. Admission at ingest is in
admission.py (as on PostgreSQL). The decisions are the planner's (store/plan/); here its
snapshots are read and its change-sets written.

Functions over an open write transaction; `SQLiteStore` opens it and delegates here. A run's
`flow` column carries bit flags so that runs without flow control pay for none of this.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from stepwell.store import flowrules
from stepwell.store.flowrules import BATCH, CANCEL_ON, DEBOUNCE, GATED, ORDERED, SLOTS, THROTTLE, TIMEOUT, flags
from stepwell.store.plan import lines, starts
from stepwell.store.plan.lines import Line
from stepwell.store.sqlfile import load_queries
from stepwell.store.sqlite.rows import line_of
from stepwell.store.sqlite.times import FOREVER, moment, stamp

F = load_queries("stepwell.store.sqlite", "flow.sql")

CHILD = 128  # SQLite only: the run has a parent to tell when it ends
__all__ = ["BATCH", "CANCEL_ON", "CHILD", "DEBOUNCE", "GATED", "ORDERED", "SLOTS", "THROTTLE", "TIMEOUT", "flags"]


def batch_events(conn: sqlite3.Connection, run_id: str) -> list[Any]:
    return conn.execute(F["batch_events_of"], {"run_id": run_id}).fetchall()


# Claiming.


def admit_to_start(conn: sqlite3.Connection, candidates: Sequence[tuple[str, int, bytes | None]], at: int) -> set[str]:
    """Which of these picked (id, flags, throttle) runs may start now: the planner decides over their
    slots and gates (store/plan/starts.py); the others are held for a full slot or throttled."""
    planned = [
        starts.Candidate(
            run_id,
            tuple(conn.execute(F["run_slots_of"], {"run_id": run_id}).fetchall()) if flags & SLOTS else (),
            flowrules.throttle_gate(throttle) if flags & THROTTLE and throttle is not None else None,
        )
        for run_id, flags, throttle in candidates
    ]
    in_use: dict[tuple[str, str], int] = {}
    for scope, key in sorted({(scope, key) for c in planned for scope, key, _ in c.slots}):
        (in_use[(scope, key)],) = conn.execute(F["slot_in_use"], {"scope": scope, "key": key}).fetchone() or (0,)
    tats = {}
    for scope, key in sorted({(c.throttle.scope, c.throttle.key) for c in planned if c.throttle is not None}):
        row = conn.execute(F["gate_tat"], {"scope": scope, "key": key}).fetchone()
        if row is not None:
            (tat,) = row
            tats[(scope, key)] = moment(tat)
    decided = starts.plan_starts(planned, in_use, tats, moment(at))
    _write_starts(conn, decided, {c.run_id for c in planned if c.slots})
    return set(decided.admitted)


def _write_starts(conn: sqlite3.Connection, decided: starts.Starts, with_slots: set[str]) -> None:
    for (scope, key), n in decided.slots.items():
        conn.execute(F["save_slot"], {"scope": scope, "key": key, "in_use": n})
    for run_id in decided.admitted:
        if run_id in with_slots:
            conn.execute(F["set_slots_held"], {"run_id": run_id, "held": 1})
    for run_id, scope in decided.held:
        conn.execute(F["mark_slot_waiting"], {"run_id": run_id, "scope": scope, "waiting": 1})
        conn.execute(F["set_hold"], {"run_id": run_id, "hold": "concurrency"})
    for run_id, retry_at in decided.throttled:
        conn.execute(F["throttle_run"], {"run_id": run_id, "available_at": stamp(retry_at)})
    for (scope, key), tat in decided.tats.items():
        conn.execute(F["set_gate_tat"], {"scope": scope, "key": key, "tat": stamp(tat)})


def _give_slots(conn: sqlite3.Connection, run_id: str) -> None:
    """The run's slots go back; the first waiter of each is released (starts.plan_release)."""
    slots = [(scope, key) for scope, key, _ in conn.execute(F["run_slots_of"], {"run_id": run_id}).fetchall()]
    waiters: dict[tuple[str, str], str | None] = {}
    for scope, key in slots:
        conn.execute(F["give_slot"], {"scope": scope, "key": key})
        (waiter,) = conn.execute(F["next_slot_waiter"], {"scope": scope, "key": key}).fetchone() or (None,)
        waiters[(scope, key)] = None if waiter is None else str(waiter)
    for waiter, scope in starts.plan_release(slots, waiters).released:
        conn.execute(F["mark_slot_waiting"], {"run_id": waiter, "scope": scope, "waiting": 0})
        conn.execute(F["set_hold"], {"run_id": waiter, "hold": None})
    conn.execute(F["set_slots_held"], {"run_id": run_id, "held": 0})


# Leaving: a run stops running (settled, released, rescued) or ends for good.


def left_running(conn: sqlite3.Connection, run_id: str, flow: int) -> None:
    """Hand its concurrency slots to the next waiting runs."""
    if flow & SLOTS:
        _give_slots(conn, run_id)


def finished(conn: sqlite3.Connection, run_id: str, flow: int, *, failed: bool) -> None:
    """The run is terminal: clear its waits and holds, and move its ordering key on (or park it)."""
    if flow & SLOTS:
        _, _, slots_held = conn.execute(F["run_flow"], {"run_id": run_id}).fetchone() or (None, None, 0)
        if slots_held:
            _give_slots(conn, run_id)
        for scope, _, _ in conn.execute(F["run_slots_of"], {"run_id": run_id}).fetchall():
            conn.execute(F["mark_slot_waiting"], {"run_id": run_id, "scope": scope, "waiting": 0})
    if flow & CANCEL_ON:
        conn.execute(F["forget_cancel_waits"], {"run_id": run_id})
    if flow & ORDERED:
        _key_finished(conn, run_id, failed=failed)


# Ordering keys: only the head of a key is claimable; the rest wait outside the ready index.


def _line(conn: sqlite3.Connection, function: str, key: str) -> Line | None:
    row = conn.execute(F["key_state"], {"function": function, "key": key}).fetchone()
    return None if row is None else line_of(row)


def _next_in_line(conn: sqlite3.Connection, function: str, key: str) -> str | None:
    row = conn.execute(F["next_in_key"], {"function": function, "key": key}).fetchone()
    if row is None:
        return None
    (run_id,) = row
    return str(run_id)


def _apply(
    conn: sqlite3.Connection, function: str, key: str, change: lines.LineChange, dead: str | None = None
) -> None:
    """Write a LineChange of the planner (store/plan/lines.py)."""
    if change.dead_letter_policy is not None and dead is not None:
        conn.execute(F["mark_dead_letter_key"], {"run_id": dead, "key": key, "policy": change.dead_letter_policy})
    for run_id, hold in change.holds:
        conn.execute(F["set_hold"], {"run_id": run_id, "hold": hold})
    if change.drop:
        conn.execute(F["drop_key"], {"function": function, "key": key})
    elif change.line is not None:
        line = change.line
        params = {"head": line.head, "paused": int(line.paused), "parked": int(line.parked)}
        conn.execute(F["save_key"], {"function": function, "key": key, **params})
    if change.head_hold is not None and change.head is not None:
        conn.execute(F["pause_head" if change.head_hold == "pause" else "resume_head"], {"run_id": change.head})


def _key_finished(conn: sqlite3.Connection, run_id: str, *, failed: bool) -> None:
    function, key, park, _ = conn.execute(F["run_key"], {"run_id": run_id}).fetchone()
    line = _line(conn, function, key)
    if line is None or not lines.is_head(line, run_id):
        return
    next_run = None if failed and park else _next_in_line(conn, function, key)
    _apply(
        conn, function, key, lines.head_ended(line, run_id, failed=failed, park=bool(park), next_run=next_run), run_id
    )


def rejoin_line(conn: sqlite3.Connection, run_id: str) -> None:
    """A redriven run of an ordered key takes the key back or waits first in line (lines.rejoin)."""
    function, key, _, _ = conn.execute(F["run_key"], {"run_id": run_id}).fetchone()
    _apply(conn, function, key, lines.rejoin(_line(conn, function, key), run_id))


def set_paused(conn: sqlite3.Connection, function: str, key: str, paused: bool) -> None:
    """Pausing holds the key's queued head (a run already in progress carries on); resuming releases it."""
    _apply(conn, function, key, lines.set_paused(_line(conn, function, key), paused))


def skip_parked(conn: sqlite3.Connection, function: str, key: str) -> str | None:
    """Move a parked key past its dead letter: the new head ('' if none), or None when not parked."""
    line = _line(conn, function, key)
    if line is None or not line.parked:
        return None
    change = lines.skip_parked(line, _next_in_line(conn, function, key))
    assert change is not None
    _apply(conn, function, key, change)
    return change.head or ""


# Explaining why a queued run has not started.


def explain(conn: sqlite3.Connection, run_id: str, now: int) -> str | None:
    """Why the run has not started (or resumed), worded by flowrules.waiting_reason."""
    row = conn.execute(F["get_run_explain"], {"run_id": run_id}).fetchone()
    if row is None:
        return None
    status, hold, note, key, available_at, attempt, function, function_paused = row
    head = paused = parked = None
    if hold in ("ordering", "paused", "parked"):
        head, paused, parked = conn.execute(F["key_state"], {"function": function, "key": key}).fetchone()
    slot = conn.execute(F["waiting_slot"], {"run_id": run_id}).fetchone() if hold == "concurrency" else None
    wait = conn.execute(F["pending_wait"], {"run_id": run_id}).fetchone() if status == "waiting" else None
    return flowrules.waiting_reason(
        flowrules.Waiting(
            status=status,
            hold=hold,
            note=note,
            ordering_key=key,
            available_at=moment(available_at),
            attempt=attempt,
            later=available_at > now,
            forever=available_at >= FOREVER,
            key_head=head,
            key_paused=bool(paused),
            key_parked=bool(parked),
            slot=tuple(slot) if slot else None,
            wait_event=wait[0] if wait else None,
            function=function,
            function_paused=bool(function_paused),
        )
    )
