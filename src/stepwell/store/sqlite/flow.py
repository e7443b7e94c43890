"""The SQLite transactions of flow control: ordering keys, concurrency slots, throttles and rate
limits (GCRA), debounce, batches, idempotency keys, cancel_on, and why a run is waiting.

Functions over an open write transaction; `SQLiteStore` opens it and delegates here. A run's
`flow` column carries bit flags so that runs without flow control pay for none of this.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from stepwell.store import flowrules
from stepwell.store.base import NewRun
from stepwell.store.flowrules import BATCH, CANCEL_ON, DEBOUNCE, GATED, ORDERED, SLOTS, THROTTLE, TIMEOUT, flags
from stepwell.store.plan import admission as plan
from stepwell.store.plan import lines, starts
from stepwell.store.plan.admission import Outcome
from stepwell.store.plan.lines import Line
from stepwell.store.sqlfile import load_queries
from stepwell.store.sqlite.times import FOREVER, micros, moment, stamp
from stepwell.store.sqlite.waiting import Q

F = load_queries("stepwell.store.sqlite", "flow.sql")

CHILD = 128  # SQLite only: the run has a parent to tell when it ends
__all__ = ["BATCH", "CANCEL_ON", "CHILD", "DEBOUNCE", "GATED", "ORDERED", "SLOTS", "THROTTLE", "TIMEOUT", "flags"]


# Admission: what events do to the functions with flow control they trigger. The planner decides
# (store/plan/admission.py); here its snapshot is read and its change-set written.


def admit(conn: sqlite3.Connection, runs: Sequence[tuple[NewRun, str | None]], at: int) -> list[Outcome]:
    """Admit (run, event id) pairs in order, in the open write transaction; each one's outcome."""
    want = plan.wanted([r for r, _ in runs])
    outcomes, changes = plan.admit(_snapshot(conn, want, moment(at)), runs)
    _write(conn, changes)
    return outcomes


def _snapshot(conn: sqlite3.Connection, want: plan.Wanted, at: datetime) -> plan.Snapshot:
    """The rows the planner decides on; the write transaction already holds the whole database."""
    snapshot = plan.Snapshot(at)
    for function, key in want.keys:
        row = conn.execute(Q["key_state"], {"function": function, "key": key}).fetchone()
        if row is not None:
            snapshot.lines[(function, key)] = Line(row[0], bool(row[1]), bool(row[2]))
    for scope, key in want.gates:
        row = conn.execute(Q["gate_tat"], {"scope": scope, "key": key}).fetchone()
        if row is not None:
            snapshot.tats[(scope, key)] = moment(row[0])
    for function, key in want.idempotency_keys:
        row = conn.execute(F["idempotency_state"], {"function": function, "key": key}).fetchone()
        if row is not None:
            snapshot.idempotency[(function, key)] = (row[0], moment(row[1]))
    for function, key in want.debounces:
        row = conn.execute(F["debounce_state"], {"function": function, "key": key}).fetchone()
        if row is not None:
            snapshot.debounces[(function, key)] = plan.Pending(row[0], moment(row[1]), row[2])
    for function, key in want.batches:
        row = conn.execute(F["batch_state"], {"function": function, "key": key}).fetchone()
        if row is not None:
            snapshot.batches[(function, key)] = plan.OpenBatch(row[0], row[1], row[2])
    return snapshot


def _write(conn: sqlite3.Connection, changes: plan.Admission) -> None:
    at = stamp(changes.at)
    conn.executemany(Q["insert_flow_run"], [_run_params(row, at) for row in changes.new_runs])
    conn.executemany(
        Q["insert_run_slot"],
        [{"run_id": r, "scope": scope, "key": key, "lim": limit} for r, scope, key, limit in changes.run_slots],
    )
    conn.executemany(
        Q["insert_cancel_wait"],
        [
            {"run_id": run_id, "step_id": step_id, "event_name": w.event_name, "match_path": w.match_path,
             "match_value": w.match_value, "condition": w.condition, "origin": w.origin, "now": at}
            for run_id, step_id, w in changes.cancel_waits
        ],
    )  # fmt: skip
    conn.executemany(
        F["save_key"],
        [
            {"function": f, "key": k, "head": line.head, "paused": int(line.paused), "parked": int(line.parked)}
            for (f, k), line in changes.lines.items()
            if line.changed
        ],
    )
    conn.executemany(
        Q["set_gate_tat"],
        [{"scope": s, "key": k, "tat": stamp(changes.tats[(s, k)])} for s, k in changes.gates_changed],
    )
    conn.executemany(
        F["save_idempotency_key"],
        [
            {"function": f, "key": k, "run_id": changes.idempotency[(f, k)][0],
             "expires_at": stamp(changes.idempotency[(f, k)][1])}
            for f, k in changes.keys_taken
        ],
    )  # fmt: skip
    _write_gathering(conn, changes)
    conn.executemany(
        Q["insert_skip"],
        [{"event_id": e, "function": f, "reason": reason, "run_id": r} for e, f, reason, r in changes.skips],
    )


def _write_gathering(conn: sqlite3.Connection, changes: plan.Admission) -> None:
    started = [(key, changes.debounces[key]) for key in changes.debounces_started]
    conn.executemany(
        F["save_debounce"],
        [{"function": f, "key": k, "run_id": d.run_id, "first_at": stamp(d.first_at)} for (f, k), d in started if d],
    )
    filled = [(key, changes.batches[key]) for key in changes.batches_changed]
    conn.executemany(
        F["save_batch"],
        [{"function": f, "key": k, "run_id": b.run_id, "size": b.size, "count": b.count} for (f, k), b in filled if b],
    )
    conn.executemany(Q["batch_add"], [{"run_id": r, "seq": seq, "event_id": e} for r, seq, e in changes.batch_events])
    conn.executemany(
        F["push_pending_run"],
        [{"run_id": r, "event_id": e, "available_at": stamp(when)} for r, (e, when) in changes.pushes.items()],
    )


def _run_params(row: plan.RunRow, at: int | None) -> dict[str, Any]:
    run, flow = row.run, row.flow
    return {
        "id": run.id, "function": run.function, "event_id": row.event_id, "input": run.input,
        "input_name": run.input_name, "parent_id": run.parent_id, "replay_of": run.replay_of,
        "on_failure": run.on_failure, "max_attempts": run.max_attempts, "priority": run.priority,
        "available_at": stamp(row.available_at), "now": at, "flow": row.flags, "hold": row.hold, "note": row.note,
        "ordering_key": flow.ordering_key, "park": int(flow.park_on_dead_letter), "throttle": row.throttle,
        "timeout_us": None if flow.timeout is None else micros(flow.timeout),
    }  # fmt: skip


def batch_events(conn: sqlite3.Connection, run_id: str) -> list[Any]:
    return conn.execute(Q["batch_events_of"], {"run_id": run_id}).fetchall()


# Claiming.


def admit_to_start(conn: sqlite3.Connection, candidates: Sequence[tuple[str, int, bytes | None]], at: int) -> set[str]:
    """Which of these picked (id, flags, throttle) runs may start now: the planner decides over their
    slots and gates (store/plan/starts.py); the others are held for a full slot or throttled."""
    planned = [
        starts.Candidate(
            run_id,
            tuple(conn.execute(Q["run_slots_of"], {"run_id": run_id}).fetchall()) if flags & SLOTS else (),
            flowrules.throttle_gate(throttle) if flags & THROTTLE and throttle is not None else None,
        )
        for run_id, flags, throttle in candidates
    ]
    in_use: dict[tuple[str, str], int] = {}
    for scope, key in sorted({(scope, key) for c in planned for scope, key, _ in c.slots}):
        row = conn.execute(F["slot_in_use"], {"scope": scope, "key": key}).fetchone()
        in_use[(scope, key)] = row[0] if row else 0
    tats = {}
    for scope, key in sorted({(c.throttle.scope, c.throttle.key) for c in planned if c.throttle is not None}):
        row = conn.execute(Q["gate_tat"], {"scope": scope, "key": key}).fetchone()
        if row is not None:
            tats[(scope, key)] = moment(row[0])
    decided = starts.plan_starts(planned, in_use, tats, moment(at))
    _write_starts(conn, decided, {c.run_id for c in planned if c.slots})
    return set(decided.admitted)


def _write_starts(conn: sqlite3.Connection, decided: starts.Starts, with_slots: set[str]) -> None:
    for (scope, key), n in decided.slots.items():
        conn.execute(F["save_slot"], {"scope": scope, "key": key, "in_use": n})
    for run_id in decided.admitted:
        if run_id in with_slots:
            conn.execute(Q["set_slots_held"], {"run_id": run_id, "held": 1})
    for run_id, scope in decided.held:
        conn.execute(Q["mark_slot_waiting"], {"run_id": run_id, "scope": scope, "waiting": 1})
        conn.execute(Q["set_hold"], {"run_id": run_id, "hold": "concurrency"})
    for run_id, retry_at in decided.throttled:
        conn.execute(Q["throttle_run"], {"run_id": run_id, "available_at": stamp(retry_at)})
    for (scope, key), tat in decided.tats.items():
        conn.execute(Q["set_gate_tat"], {"scope": scope, "key": key, "tat": stamp(tat)})


def _give_slots(conn: sqlite3.Connection, run_id: str) -> None:
    """The run's slots go back; the first waiter of each is released (starts.plan_release)."""
    slots = [(scope, key) for scope, key, _ in conn.execute(Q["run_slots_of"], {"run_id": run_id}).fetchall()]
    waiters: dict[tuple[str, str], str | None] = {}
    for scope, key in slots:
        conn.execute(Q["give_slot"], {"scope": scope, "key": key})
        row = conn.execute(Q["next_slot_waiter"], {"scope": scope, "key": key}).fetchone()
        waiters[(scope, key)] = None if row is None else str(row[0])
    for waiter, scope in starts.plan_release(slots, waiters).released:
        conn.execute(Q["mark_slot_waiting"], {"run_id": waiter, "scope": scope, "waiting": 0})
        conn.execute(Q["set_hold"], {"run_id": waiter, "hold": None})
    conn.execute(Q["set_slots_held"], {"run_id": run_id, "held": 0})


# Leaving: a run stops running (settled, released, rescued) or ends for good.


def left_running(conn: sqlite3.Connection, run_id: str, flow: int) -> None:
    """Hand its concurrency slots to the next waiting runs."""
    if flow & SLOTS:
        _give_slots(conn, run_id)


def finished(conn: sqlite3.Connection, run_id: str, flow: int, *, failed: bool) -> None:
    """The run is terminal: clear its waits and holds, and move its ordering key on (or park it)."""
    if flow & SLOTS:
        row = conn.execute(Q["run_flow"], {"run_id": run_id}).fetchone()
        if row is not None and row[2]:
            _give_slots(conn, run_id)
        for scope, _, _ in conn.execute(Q["run_slots_of"], {"run_id": run_id}).fetchall():
            conn.execute(Q["mark_slot_waiting"], {"run_id": run_id, "scope": scope, "waiting": 0})
    if flow & CANCEL_ON:
        conn.execute(Q["forget_cancel_waits"], {"run_id": run_id})
    if flow & ORDERED:
        _key_finished(conn, run_id, failed=failed)


# Ordering keys: only the head of a key is claimable; the rest wait outside the ready index.


def _line(conn: sqlite3.Connection, function: str, key: str) -> Line | None:
    row = conn.execute(Q["key_state"], {"function": function, "key": key}).fetchone()
    return None if row is None else Line(row[0], bool(row[1]), bool(row[2]))


def _next_in_line(conn: sqlite3.Connection, function: str, key: str) -> str | None:
    row = conn.execute(Q["next_in_key"], {"function": function, "key": key}).fetchone()
    return None if row is None else str(row[0])


def _apply(
    conn: sqlite3.Connection, function: str, key: str, change: lines.LineChange, dead: str | None = None
) -> None:
    """Write a LineChange of the planner (store/plan/lines.py)."""
    if change.dead_letter_policy is not None and dead is not None:
        conn.execute(Q["mark_dead_letter_key"], {"run_id": dead, "key": key, "policy": change.dead_letter_policy})
    for run_id, hold in change.holds:
        conn.execute(Q["set_hold"], {"run_id": run_id, "hold": hold})
    if change.drop:
        conn.execute(Q["drop_key"], {"function": function, "key": key})
    elif change.line is not None:
        line = change.line
        params = {"head": line.head, "paused": int(line.paused), "parked": int(line.parked)}
        conn.execute(F["save_key"], {"function": function, "key": key, **params})
    if change.head_hold is not None and change.head is not None:
        conn.execute(Q["pause_head" if change.head_hold == "pause" else "resume_head"], {"run_id": change.head})


def _key_finished(conn: sqlite3.Connection, run_id: str, *, failed: bool) -> None:
    function, key, park, _ = conn.execute(Q["run_key"], {"run_id": run_id}).fetchone()
    line = _line(conn, function, key)
    if line is None or not lines.is_head(line, run_id):
        return
    next_run = None if failed and park else _next_in_line(conn, function, key)
    _apply(
        conn, function, key, lines.head_ended(line, run_id, failed=failed, park=bool(park), next_run=next_run), run_id
    )


def rejoin_line(conn: sqlite3.Connection, run_id: str) -> None:
    """A redriven run of an ordered key takes the key back or waits first in line (lines.rejoin)."""
    function, key, _, _ = conn.execute(Q["run_key"], {"run_id": run_id}).fetchone()
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
    row = conn.execute(Q["explain_run"], {"run_id": run_id}).fetchone()
    if row is None:
        return None
    status, hold, note, key, available_at, attempt, function = row
    head = paused = parked = None
    if hold in ("ordering", "paused", "parked"):
        head, paused, parked = conn.execute(Q["key_state"], {"function": function, "key": key}).fetchone()
    slot = conn.execute(Q["waiting_slot"], {"run_id": run_id}).fetchone() if hold == "concurrency" else None
    wait = conn.execute(Q["pending_wait"], {"run_id": run_id}).fetchone() if status == "waiting" else None
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
        )
    )
