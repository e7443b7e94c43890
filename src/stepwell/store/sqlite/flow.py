"""The SQLite transactions of flow control: ordering keys, concurrency slots, throttles and rate
limits (GCRA), debounce, batches, idempotency keys, cancel_on, and why a run is waiting.

Functions over an open write transaction; `SQLiteStore` opens it and delegates here. A run's
`flow` column carries bit flags so that runs without flow control pay for none of this.
"""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from typing import Any

from stepwell.store import flowrules
from stepwell.store.base import Gate, NewRun, RunFlow
from stepwell.store.flowrules import BATCH, CANCEL_ON, DEBOUNCE, ORDERED, SLOTS, THROTTLE, TIMEOUT, flags
from stepwell.store.sqlite.times import EPOCH, FOREVER, micros, moment
from stepwell.store.sqlite.waiting import Q

CHILD = 128  # SQLite only: the run has a parent to tell when it ends
__all__ = ["BATCH", "CANCEL_ON", "CHILD", "DEBOUNCE", "ORDERED", "SLOTS", "THROTTLE", "TIMEOUT", "flags"]


# Admission: what an event does to a function with flow control.


def admit(conn: sqlite3.Connection, run: NewRun, event_id: str | None, at: int) -> tuple[str, str | None] | None:
    """Insert `run`, or fold the event into a pending run, or skip it.

    Returns None when `run` was inserted as given; ("folded", run_id) when the event became the
    event of a pending debounced run; otherwise (reason, run_id or None) for the event's skip record.
    """
    flow = run.flow
    assert flow is not None
    gate_tat = None
    if flow.rate_limit is not None:
        allowed, _, gate_tat = gate_check(conn, flow.rate_limit, at)
        if not allowed:
            return ("rate_limited", None)
    if flow.idempotency_key is not None:
        taken = conn.execute(
            Q["take_idempotency_key"],
            {
                "function": run.function,
                "key": flow.idempotency_key,
                "run_id": run.id,
                "expires_at": at + micros(timedelta(hours=24)),
                "now": at,
            },
        ).rowcount
        if not taken:
            row = conn.execute(Q["idempotency_run"], {"function": run.function, "key": flow.idempotency_key}).fetchone()
            return ("deduplicated", row[0] if row else None)
    if flow.rate_limit is not None and gate_tat is not None:
        conn.execute(Q["set_gate_tat"], {"scope": flow.rate_limit.scope, "key": flow.rate_limit.key, "tat": gate_tat})
    if flow.debounce is not None:
        folded = _debounce(conn, run, flow, event_id, at)
        if folded is not None:
            return ("folded", folded)
    elif flow.batch is not None:
        batched = _add_to_batch(conn, run, flow, event_id, at)
        if batched is not None:
            return ("batched", batched)
    _insert(conn, run, flow, event_id, at)
    return None


def _insert(conn: sqlite3.Connection, run: NewRun, flow: RunFlow, event_id: str | None, at: int) -> None:
    available_at, note = at, None
    if flow.debounce is not None:
        available_at, note = at + micros(flow.debounce.period), "debounced"
    elif flow.batch is not None:
        available_at, note = at + micros(flow.batch.period), "batching"
    hold = None
    if flow.ordering_key is not None:
        hold = _join_line(conn, run.function, flow.ordering_key, run.id)
    throttle = None if flow.throttle is None else flowrules.throttle_json(flow.throttle)
    conn.execute(
        Q["insert_flow_run"],
        {
            "id": run.id,
            "function": run.function,
            "event_id": event_id,
            "input": run.input,
            "input_name": run.input_name,
            "parent_id": run.parent_id,
            "replay_of": run.replay_of,
            "on_failure": run.on_failure,
            "max_attempts": run.max_attempts,
            "priority": run.priority,
            "available_at": available_at,
            "now": at,
            "flow": flags(flow),
            "hold": hold,
            "note": note,
            "ordering_key": flow.ordering_key,
            "park": int(flow.park_on_dead_letter),
            "throttle": throttle,
            "timeout_us": None if flow.timeout is None else micros(flow.timeout),
        },
    )
    for claim in flow.slots:
        conn.execute(
            Q["insert_run_slot"], {"run_id": run.id, "scope": claim.scope, "key": claim.key, "lim": claim.limit}
        )
    for index, wait in enumerate(flow.cancel_on):
        conn.execute(
            Q["insert_cancel_wait"],
            {
                "run_id": run.id,
                "step_id": f"cancel_on#{index}",
                "event_name": wait.event_name,
                "match_path": wait.match_path,
                "match_value": wait.match_value,
                "condition": wait.condition,
                "origin": wait.origin,
                "now": at,
            },
        )
    if flow.debounce is not None:
        conn.execute(
            Q["upsert_debounce"], {"function": run.function, "key": flow.debounce.key, "run_id": run.id, "now": at}
        )
    if flow.batch is not None:
        conn.execute(
            Q["upsert_batch"],
            {"function": run.function, "key": flow.batch.key, "run_id": run.id, "size": flow.batch.size},
        )
        conn.execute(Q["batch_add"], {"run_id": run.id, "seq": 0, "event_id": event_id})
        if flow.batch.size == 1:
            conn.execute(Q["batch_full"], {"run_id": run.id, "now": at})


def _debounce(conn: sqlite3.Connection, run: NewRun, flow: RunFlow, event_id: str | None, at: int) -> str | None:
    debounce = flow.debounce
    assert debounce is not None
    pending = conn.execute(Q["debounce_pending"], {"function": run.function, "key": debounce.key}).fetchone()
    if pending is None:
        return None
    run_id, first_at = pending
    available_at = at + micros(debounce.period)
    if debounce.max_wait is not None:
        available_at = min(available_at, first_at + micros(debounce.max_wait))
    previous = conn.execute(Q["run_event"], {"run_id": run_id}).fetchone()
    conn.execute(Q["debounce_push"], {"run_id": run_id, "event_id": event_id, "available_at": available_at})
    if previous is not None and previous[0] is not None:
        record_skip(conn, previous[0], run.function, "debounced", run_id)
        conn.execute(Q["mark_debounced"], {"id": previous[0]})
    return str(run_id)


def _add_to_batch(conn: sqlite3.Connection, run: NewRun, flow: RunFlow, event_id: str | None, at: int) -> str | None:
    batch = flow.batch
    assert batch is not None
    open_batch = conn.execute(Q["batch_open"], {"function": run.function, "key": batch.key}).fetchone()
    if open_batch is None:
        return None
    run_id, count = open_batch
    conn.execute(Q["batch_add"], {"run_id": run_id, "seq": count, "event_id": event_id})
    conn.execute(Q["batch_count"], {"function": run.function, "key": batch.key, "count": count + 1})
    if count + 1 >= batch.size:
        conn.execute(Q["batch_full"], {"run_id": run_id, "now": at})
    return str(run_id)


def record_skip(conn: sqlite3.Connection, event_id: str, function: str, reason: str, run_id: str | None) -> None:
    conn.execute(Q["insert_skip"], {"event_id": event_id, "function": function, "reason": reason, "run_id": run_id})


def batch_events(conn: sqlite3.Connection, run_id: str) -> list[Any]:
    return conn.execute(Q["batch_events_of"], {"run_id": run_id}).fetchall()


# Rates: the generic cell rate algorithm, one row of state per (scope, key).


def gate_check(conn: sqlite3.Connection, gate: Gate, at: int) -> tuple[bool, int, int]:
    """(allowed, earliest retry time, the state to store if the start goes ahead), by flowrules.gcra."""
    row = conn.execute(Q["gate_tat"], {"scope": gate.scope, "key": gate.key}).fetchone()
    allowed, retry_at, tat = flowrules.gcra(gate, moment(row[0] if row else at), moment(at))
    return allowed, micros(retry_at - EPOCH), micros(tat - EPOCH)


# Claiming.


def admit_to_start(conn: sqlite3.Connection, run_id: str, flow: int, throttle: bytes | None, at: int) -> bool:
    """May this ready run start now? Takes its concurrency slots and throttle turn, or holds it back."""
    if flow & SLOTS and not _take_slots(conn, run_id):
        return False
    if flow & THROTTLE and throttle is not None:
        gate = flowrules.throttle_gate(throttle)
        allowed, retry_at, tat = gate_check(conn, gate, at)
        if not allowed:
            if flow & SLOTS:
                _give_slots(conn, run_id, promote=False)
            conn.execute(Q["throttle_run"], {"run_id": run_id, "available_at": retry_at})
            return False
        conn.execute(Q["set_gate_tat"], {"scope": gate.scope, "key": gate.key, "tat": tat})
    return True


def _take_slots(conn: sqlite3.Connection, run_id: str) -> bool:
    taken: list[tuple[str, str]] = []
    for scope, key, limit in conn.execute(Q["run_slots_of"], {"run_id": run_id}).fetchall():
        if conn.execute(Q["take_slot"], {"scope": scope, "key": key, "lim": limit}).rowcount != 1:
            for taken_scope, taken_key in taken:
                conn.execute(Q["give_slot"], {"scope": taken_scope, "key": taken_key})
            conn.execute(Q["mark_slot_waiting"], {"run_id": run_id, "scope": scope, "waiting": 1})
            conn.execute(Q["set_hold"], {"run_id": run_id, "hold": "concurrency"})
            return False
        taken.append((scope, key))
    conn.execute(Q["set_slots_held"], {"run_id": run_id, "held": 1})
    return True


def _give_slots(conn: sqlite3.Connection, run_id: str, *, promote: bool = True) -> None:
    for scope, key, _ in conn.execute(Q["run_slots_of"], {"run_id": run_id}).fetchall():
        conn.execute(Q["give_slot"], {"scope": scope, "key": key})
        if promote:
            waiter = conn.execute(Q["next_slot_waiter"], {"scope": scope, "key": key}).fetchone()
            if waiter is not None:
                conn.execute(Q["mark_slot_waiting"], {"run_id": waiter[0], "scope": scope, "waiting": 0})
                conn.execute(Q["set_hold"], {"run_id": waiter[0], "hold": None})
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


def _join_line(conn: sqlite3.Connection, function: str, key: str, run_id: str) -> str | None:
    """The hold of a new run of `key`: None if it becomes the head, else it waits its turn."""
    if conn.execute(Q["take_key"], {"function": function, "key": key, "run_id": run_id}).rowcount:
        return None
    head, paused, parked = conn.execute(Q["key_state"], {"function": function, "key": key}).fetchone()
    if head is None:
        conn.execute(
            Q["set_key"], {"function": function, "key": key, "head": run_id, "paused": paused, "parked": parked}
        )
        return "paused" if paused else None
    return "paused" if paused else "ordering"


def _key_finished(conn: sqlite3.Connection, run_id: str, *, failed: bool) -> None:
    function, key, park, _ = conn.execute(Q["run_key"], {"run_id": run_id}).fetchone()
    state = conn.execute(Q["key_state"], {"function": function, "key": key}).fetchone()
    if state is None or state[0] != run_id:
        return
    _, paused, _ = state
    if failed:
        policy = "parked" if park else "skipped"
        conn.execute(Q["mark_dead_letter_key"], {"run_id": run_id, "key": key, "policy": policy})
        if park:
            conn.execute(
                Q["set_key"], {"function": function, "key": key, "head": run_id, "paused": paused, "parked": 1}
            )
            return
    promote(conn, function, key, paused=bool(paused))


def promote(conn: sqlite3.Connection, function: str, key: str, *, paused: bool) -> str | None:
    """Give the key to its next run in line (held if the key is paused); drop the key when none is left."""
    row = conn.execute(Q["next_in_key"], {"function": function, "key": key}).fetchone()
    if row is None:
        if paused:
            conn.execute(Q["set_key"], {"function": function, "key": key, "head": None, "paused": 1, "parked": 0})
        else:
            conn.execute(Q["drop_key"], {"function": function, "key": key})
        return None
    conn.execute(Q["set_hold"], {"run_id": row[0], "hold": "paused" if paused else None})
    conn.execute(Q["set_key"], {"function": function, "key": key, "head": row[0], "paused": int(paused), "parked": 0})
    return str(row[0])


def rejoin_line(conn: sqlite3.Connection, run_id: str) -> None:
    """A redriven run of an ordered key: it takes the key back if it is free or was parked on it,
    otherwise it waits — first in line, by its original position."""
    function, key, _, _ = conn.execute(Q["run_key"], {"run_id": run_id}).fetchone()
    state = conn.execute(Q["key_state"], {"function": function, "key": key}).fetchone()
    if state is None or state[0] in (None, run_id):
        paused = bool(state and state[1])
        conn.execute(Q["ensure_key"], {"function": function, "key": key})
        conn.execute(
            Q["set_key"], {"function": function, "key": key, "head": run_id, "paused": int(paused), "parked": 0}
        )
        conn.execute(Q["set_hold"], {"run_id": run_id, "hold": "paused" if paused else None})
    else:
        conn.execute(Q["set_hold"], {"run_id": run_id, "hold": "ordering"})


def set_paused(conn: sqlite3.Connection, function: str, key: str, paused: bool) -> None:
    """Pausing holds the key's queued head (a run already in progress carries on); resuming releases it."""
    conn.execute(Q["ensure_key"], {"function": function, "key": key})
    head, _, parked = conn.execute(Q["key_state"], {"function": function, "key": key}).fetchone()
    conn.execute(
        Q["set_key"], {"function": function, "key": key, "head": head, "paused": int(paused), "parked": parked}
    )
    if head is None:
        if not paused:
            promote(conn, function, key, paused=False)
        return
    conn.execute(Q["pause_head" if paused else "resume_head"], {"run_id": head})


def skip_parked(conn: sqlite3.Connection, function: str, key: str) -> str | None:
    state = conn.execute(Q["key_state"], {"function": function, "key": key}).fetchone()
    if state is None or not state[2]:
        return None
    return promote(conn, function, key, paused=bool(state[1])) or ""


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
