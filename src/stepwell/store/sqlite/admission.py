"""Admission at ingest on SQLite: what new events do to the functions with flow control they
trigger (rate limit, idempotency key, debounce, batch, their place in an ordering key's line),
inside the write transaction that stores them.

The planner decides (store/plan/admission.py), as on PostgreSQL. SQLite's write transaction
holds the whole database, so there is nothing to lock row by row: the snapshot is read with
single-row statements (in-process, no round trips) and the change-set written with executemany.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from stepwell.store.base import NewEvent, NewRun
from stepwell.store.plan import admission as plan
from stepwell.store.plan.admission import Outcome
from stepwell.store.sqlfile import load_queries
from stepwell.store.sqlite.rows import line_of
from stepwell.store.sqlite.times import micros, moment, stamp
from stepwell.store.sqlite.waiting import Q

F = load_queries("stepwell.store.sqlite", "flow.sql")


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
        row = conn.execute(F["key_state"], {"function": function, "key": key}).fetchone()
        if row is not None:
            snapshot.lines[(function, key)] = line_of(row)
    for scope, key in want.gates:
        row = conn.execute(F["gate_tat"], {"scope": scope, "key": key}).fetchone()
        if row is not None:
            (tat,) = row
            snapshot.tats[(scope, key)] = moment(tat)
    for function, key in want.idempotency_keys:
        row = conn.execute(F["idempotency_state"], {"function": function, "key": key}).fetchone()
        if row is not None:
            run_id, expires_at = row
            snapshot.idempotency[(function, key)] = (run_id, moment(expires_at))
    for function, key in want.debounces:
        row = conn.execute(F["debounce_state"], {"function": function, "key": key}).fetchone()
        if row is not None:
            run_id, first_at, event_id = row
            snapshot.debounces[(function, key)] = plan.Pending(run_id, moment(first_at), event_id)
    for function, key in want.batches:
        row = conn.execute(F["batch_state"], {"function": function, "key": key}).fetchone()
        if row is not None:
            snapshot.batches[(function, key)] = plan.OpenBatch(*row)
    return snapshot


def _write(conn: sqlite3.Connection, changes: plan.Admission) -> None:
    at = stamp(changes.at)
    conn.executemany(F["insert_flow_run"], [_run_params(row, at) for row in changes.new_runs])
    conn.executemany(
        F["insert_run_slot"],
        [{"run_id": r, "scope": scope, "key": key, "lim": limit} for r, scope, key, limit in changes.run_slots],
    )
    conn.executemany(
        F["insert_cancel_wait"],
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
        F["set_gate_tat"],
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
        F["insert_skip"],
        [{"event_id": e, "function": f, "reason": reason, "run_id": r} for e, f, reason, r in changes.skips],
    )
    # the event a later one replaced in its pending debounced run reads `debounced`, not `started`
    conn.executemany(F["mark_debounced"], [{"id": e} for e, _, reason, _ in changes.skips if reason == "debounced"])


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
    conn.executemany(F["batch_add"], [{"run_id": r, "seq": seq, "event_id": e} for r, seq, e in changes.batch_events])
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


def insert_runs(conn: sqlite3.Connection, runs: Sequence[NewRun], at: int, *, event_id: str | None) -> None:
    """Runs without flow control: one multi-row statement."""
    conn.executemany(Q["create_runs"], [_new_run_row(r, event_id, at) for r in runs])


def _new_run_row(r: NewRun, event_id: str | None, at: int) -> tuple[Any, ...]:
    """create_runs' parameters, in its order (numbered, bound from a tuple: queries.sql says why)."""
    return (r.id, r.function, event_id, r.input, r.input_name, r.parent_id, r.replay_of, r.on_failure,
            r.max_attempts, r.priority, at)  # fmt: skip


def admit_runs(
    conn: sqlite3.Connection, runs: Sequence[NewRun], at: int, *, event_id: str | None
) -> list[tuple[str | None, str | None]]:
    """Insert runs through their flow control; per run, (the run doing its work, why not itself).

    The reason is None when the run was inserted as given; "folded" when its event became the
    event of a pending debounced run; otherwise the skip reason (deduplicated, rate_limited —
    with no run —, batched). Runs without an event (direct enqueue) skip debounce and batching,
    which gather events.
    """
    plain = [run for run in runs if run.flow is None]
    insert_runs(conn, plain, at, event_id=event_id)
    results: dict[str, tuple[str | None, str | None]] = {run.id: (run.id, None) for run in plain}
    flowed = [
        (run if event_id is not None else replace(run, flow=replace(run.flow, debounce=None, batch=None)), event_id)
        for run in runs
        if run.flow is not None
    ]
    for (run, _), outcome in zip(flowed, admit(conn, flowed, at) if flowed else [], strict=True):
        results[run.id] = (run.id, None) if outcome is None else (outcome[1], outcome[0])
    return [results[run.id] for run in runs]


def insert_event_runs(conn: sqlite3.Connection, events: Sequence[NewEvent], at: int) -> None:
    """The runs without flow control of many new events: one multi-row statement for the whole batch."""
    conn.executemany(Q["create_runs"], [_new_run_row(r, e.id, at) for e in events for r in e.runs if r.flow is None])


def admit_event_flow_runs(
    conn: sqlite3.Connection, events: Sequence[NewEvent], at: int
) -> dict[str, tuple[tuple[str, ...], str | None]]:
    """After insert_event_runs: the events' runs with flow control, admitted together in batch order.
    Per event: (the runs it owns, plain ones included; the first reason one of its functions started nothing)."""
    pairs = [(run, event.id) for event in events for run in event.runs if run.flow is not None]
    owned = {event.id: [run.id for run in event.runs if run.flow is None] for event in events}
    skipped: dict[str, str] = {}
    for (run, event_id), outcome in zip(pairs, admit(conn, pairs, at) if pairs else [], strict=True):
        if outcome is None or outcome[0] == "folded":
            owned[event_id].append(run.id if outcome is None else str(outcome[1]))
        else:
            skipped.setdefault(event_id, outcome[0])
    return {event.id: (tuple(owned[event.id]), skipped.get(event.id)) for event in events}


def admit_event_runs(
    conn: sqlite3.Connection, runs: Sequence[NewRun], at: int, *, event_id: str
) -> tuple[tuple[str, ...], str | None]:
    """An event's runs: (the runs the event owns, the first reason one of its functions started nothing)."""
    results = admit_runs(conn, runs, at, event_id=event_id)
    owned = tuple(owner for owner, reason in results if owner is not None and reason in (None, "folded"))
    skips = [reason for _, reason in results if reason not in (None, "folded")]
    return owned, skips[0] if skips else None
