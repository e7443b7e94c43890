"""The PostgreSQL side of flow control: admitting picked runs to start (concurrency slots, throttle),
what a run that stops running or ends sets in motion (slots handed to waiting runs, its ordering
key handed to the next run in line, or parked), operating a key, and why a run waits. Admission
at ingest is in admission.py. Statements are in flow.sql.

Functions over a connection inside the store's open transaction. Many workers run them at once
under READ COMMITTED, and the single-writer SQLite store has no such problem, so here each
decision about a line or a limit is made holding the row lock of that line or limit (the
ordering_keys row, the slots row), by a statement that runs after the lock was granted and so
sees every transaction that held it before. The taking and the releasing side both lock it:

* a run held back for a full slot registers as a waiter while holding the slot's row; whoever
  gives a slot back locks that row first, so it sees the waiter (or the waiter sees the slot free);
* a new run joins a key's line holding the key's row; whoever ends the key's head locks that row
  before looking for the next run, so the newcomer is either seen in line or sees the key free.

Locks are taken in one order everywhere, so that transactions wait for each other but never in
a circle:

1. the runs a transaction changes, in id order (a claim skips locked runs instead of waiting),
   then their parents (an invoke's result);
2. concurrency slots, ordering keys, gates, idempotency keys, debounces, batches: tables in this
   order, rows of a table in key order;
3. the runs it promotes: the waiters of freed slots, the next run of each line (re-checked after
   a wait). Pending debounced or batched runs are taken with SKIP LOCKED instead.

A run promoted in step 3 is not claimable; the transactions that lock it first are those ending
it (a cancel, a timeout), which take no slot (it holds none), and no key unless it is the key's
head; and nothing that holds a key waits for the key's head (a pause skips a locked head). An
ended run takes its key's lock only when it is the key's head, read without the lock: a run
becomes a head only in a transaction that holds the run's row, as the ending one does. (One
exception: an ingest whose events cancel runs takes their keys before those of the runs it
admits; two such ingests can deadlock, and PostgreSQL then aborts one, which changes nothing:
StoreUnavailable.)
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from stepwell.store.flowrules import (
    CANCEL_ON,
    ORDERED,
    SLOTS,
    THROTTLE,
    Waiting,
    throttle_gate,
    waiting_reason,
)
from stepwell.store.plan import lines, starts
from stepwell.store.plan.lines import Line
from stepwell.store.postgres.rows import CandidateRow
from stepwell.store.postgres.statements import FOREVER, Connection, one, run


def columns(rows: Sequence[Sequence[Any]], count: int) -> list[list[Any]]:
    """Rows as `count` parallel lists (statement parameters travel as arrays)."""
    return [[row[index] for row in rows] for index in range(count)]


def arrays(names: Sequence[str], rows: Sequence[Sequence[Any]], **more: Any) -> dict[str, Any]:
    """Statement parameters: one array per column of `rows`, under `names`, and `more` as they are."""
    return {**dict(zip(names, columns(rows, len(names)), strict=True)), **more}


def _pairs(keys: Sequence[tuple[str, str]], first: str, second: str) -> dict[str, list[str]]:
    return {first: [a for a, _ in keys], second: [b for _, b in keys]}


# Claiming: may these picked runs start now?


def admit_to_start(conn: Connection, candidates: Sequence[CandidateRow]) -> set[str]:
    """Take the concurrency slots and throttle turns of picked (locked) runs, in the order given;
    returns those that may start. The others are held for a full slot, or throttled until their turn.
    claim_candidates has locked their slots; their gates are locked here. The planner decides
    (store/plan/starts.py)."""
    planned = [
        starts.Candidate(
            c.run_id,
            tuple(zip(c.slot_scopes, c.slot_keys, c.slot_limits, strict=True)) if c.flags & SLOTS else (),
            throttle_gate(c.throttle) if c.flags & THROTTLE and c.throttle else None,
        )
        for c in candidates
    ]
    in_use = {(s, k): n for c in candidates for s, k, n in zip(c.slot_scopes, c.slot_keys, c.slot_uses, strict=True)}
    gates = sorted({(c.throttle.scope, c.throttle.key) for c in planned if c.throttle is not None})
    at = candidates[0].at
    tats: dict[tuple[str, str], datetime] = {}
    if gates:
        gate_keys = _pairs(gates, "scopes", "keys")
        with conn.pipeline():
            run(conn, "lock_gates", {**gate_keys, "now": at})
            tats = {(s, k): t for s, k, t in run(conn, "gate_states", gate_keys).fetchall()}
    decided = starts.plan_starts(planned, in_use, tats, at)
    if decided.held or decided.throttled or decided.slots or decided.tats:
        held_ids, held_scopes = columns(decided.held, 2)
        throttled_ids, retry_ats = columns(decided.throttled, 2)
        slot_scopes, slot_names, in_uses = columns([(s, k, n) for (s, k), n in decided.slots.items()], 3)
        gate_scopes, gate_names, new_tats = columns([(s, k, t) for (s, k), t in decided.tats.items()], 3)
        params = {
            "held_ids": held_ids,
            "held_scopes": held_scopes,
            "throttled_ids": throttled_ids,
            "retry_ats": retry_ats,
            "slot_scopes": slot_scopes,
            "slot_keys": slot_names,
            "in_uses": in_uses,
            "gate_scopes": gate_scopes,
            "gate_keys": gate_names,
            "tats": new_tats,
        }
        run(conn, "save_admissions", params)
    return set(decided.admitted)


# Leaving: runs stop running (settled, released, rescued) or end for good (completed, failed, cancelled).


def runs_stopped(
    conn: Connection, *, left: Sequence[tuple[str, int]] = (), ended: Sequence[tuple[str, int, bool]] = ()
) -> None:
    """In the transaction that changed these (locked) runs: `left` stopped running, (id, flags);
    `ended` are terminal, (id, flags, failed). Their slots go to waiting runs, their cancel waits
    are dropped, and the keys they held move on to the next run in line (or park).

    No round trip of its own: the statements are decided by the runs' flags alone, and go to the
    server with the transaction's commit."""
    holders = [run_id for run_id, flags in left if flags & SLOTS]
    holders += [run_id for run_id, flags, _ in ended if flags & SLOTS]
    slot_waits = [run_id for run_id, flags, _ in ended if flags & SLOTS]
    cancel_waits = [run_id for run_id, flags, _ in ended if flags & CANCEL_ON]
    ordered = [(run_id, failed) for run_id, flags, failed in ended if flags & ORDERED]
    if not (holders or slot_waits or cancel_waits or ordered):
        return
    with conn.pipeline():
        if slot_waits or cancel_waits:
            run(conn, "forget_run_flow", {"slot_run_ids": slot_waits, "cancel_run_ids": cancel_waits})
        if holders:
            run(conn, "lock_held_slots", {"run_ids": holders})
            run(conn, "give_slots", {"run_ids": holders})
        if ordered:
            run(conn, "lock_heads", {"run_ids": [run_id for run_id, _ in ordered]})
            run(conn, "move_keys", arrays(("run_ids", "failed"), ordered))


def _save_keys(conn: Connection, states: Sequence[tuple[str, str, str | None, bool, bool]]) -> None:
    """Write (function, key, head, paused, parked); a key without a head that is not paused is dropped."""
    run(conn, "save_keys", arrays(("functions", "keys", "heads", "paused", "parked"), states))


def rejoin_line(conn: Connection, run_ids: Sequence[str]) -> None:
    """Redriven runs of ordered keys: each takes its key back or waits first in line (lines.rejoin)."""
    runs = run(conn, "key_line_of", {"run_ids": list(run_ids)}).fetchall()  # by seq
    if not runs:
        return
    keys = _pairs(sorted({(function, key) for _, function, key in runs}), "functions", "keys")
    run(conn, "lock_keys", keys)
    state = {(f, k): Line(head, paused, parked) for f, k, head, paused, parked in run(conn, "key_states", keys)}
    holds: list[tuple[str, str | None]] = []
    for run_id, function, key in runs:
        change = lines.rejoin(state[(function, key)], run_id)
        if change.line is not None:
            state[(function, key)] = change.line
        holds += change.holds
    _save_keys(conn, [(f, k, line.head, line.paused, line.parked) for (f, k), line in state.items()])
    run_ids_, hold_values = columns(holds, 2)
    run(conn, "set_holds", {"run_ids": run_ids_, "holds": hold_values})


# Operating a key.


def set_paused(conn: Connection, function: str, key: str, paused: bool) -> None:
    """Pausing holds the key's queued head (a run already in progress carries on); resuming releases it."""
    keys = {"functions": [function], "keys": [key]}
    run(conn, "lock_keys", keys)
    [(_, _, head, was_paused, parked)] = run(conn, "key_states", keys).fetchall()
    change = lines.set_paused(Line(head, was_paused, parked), paused)
    line = change.line or Line(None, False, parked)  # dropped: no head and not paused
    _save_keys(conn, [(function, key, line.head, line.paused, line.parked)])
    if change.head_hold is not None and change.head is not None:
        run(conn, "pause_head" if change.head_hold == "pause" else "resume_head", {"run_id": change.head})


def skip_parked(conn: Connection, function: str, key: str) -> str | None:
    """Move a parked key past its dead letter: the new head ('' if none), or None when not parked."""
    locked = run(conn, "lock_key_rows", {"functions": [function], "keys": [key]}).fetchall()
    if not locked or not locked[0][4]:
        return None
    [head], _ = one(conn, "move_keys", {"run_ids": [locked[0][2]], "failed": [False]})  # as if its head completed
    return str(head)


# Explaining why a run has not started.


def explain(row: Sequence[Any]) -> str | None:
    """Run.waiting_reason from a get_run_explain row."""
    *line, function, function_paused = row
    status, hold, note, key, available_at, attempt, later, head, paused, parked, *slot, wait_event = line
    return waiting_reason(
        Waiting(
            status=status,
            hold=hold,
            note=note,
            ordering_key=key,
            available_at=available_at,
            attempt=attempt,
            later=bool(later),
            forever=available_at >= FOREVER,
            key_head=head,
            key_paused=paused,
            key_parked=parked,
            slot=None if slot[0] is None else (slot[0], slot[1], slot[2], slot[3]),
            wait_event=wait_event,
            function=function,
            function_paused=bool(function_paused),
        )
    )
