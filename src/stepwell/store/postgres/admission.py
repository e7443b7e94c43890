"""Admission at ingest on PostgreSQL: what each new event does to the functions it triggers that
have flow control (rate limit, idempotency key, debounce, batch, its place in an ordering key's
line), inside the transaction that stores the event.

The decisions are the planner's (store/plan/admission.py), as on SQLite. What is PostgreSQL's
is the locking: many producers ingest at once, so the rows an ingest decides on are locked
first, each table in key order (the order flow.py documents), and read once into the planner's
snapshot; a batch of 10,000 ordered events then costs a few set-based statements, not 10,000
round trips. Rows that did not exist are locked through placeholders (NULL run or head), which
are dropped again if nothing used them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from stepwell.model.records import Disposition
from stepwell.store.base import ConditionCheck, NewEvent, NewRun
from stepwell.store.plan import admission as plan
from stepwell.store.plan.admission import Admission, OpenBatch, Outcome, Pending, Snapshot
from stepwell.store.plan.lines import Line
from stepwell.store.postgres import params as p
from stepwell.store.postgres import waiting
from stepwell.store.postgres.flow import arrays, columns
from stepwell.store.postgres.statements import Connection, one, run

# The rows an ingest decides on, in lock order: (lock statement, read statement, first key column).
_TABLES = {
    "keys": ("lock_keys", "key_states", "functions"),
    "gates": ("lock_gates", "gate_states", "scopes"),
    "idempotency_keys": ("lock_idempotency_keys", "idempotency_states", "functions"),
    "debounces": ("lock_debounces", "debounce_states", "functions"),
    "batches": ("lock_batches", "batch_states", "functions"),
}


# Cancels runs in the open transaction: (conn, run ids, now) -> (ids cancelled, fan-outs to check after commit).
Cancel = Callable[[Connection, list[str], datetime | None], tuple[list[str], list[tuple[str, str]]]]


def store_events(
    conn: Connection,
    events: Sequence[NewEvent],
    now: datetime | None,
    conditions: ConditionCheck | None,
    cancel: Cancel,
) -> tuple[list[str], dict[str, tuple[str, ...]], list[tuple[str, str]]]:
    """In the caller's transaction: the events and their runs without flow control, the waits they
    resume and the runs they cancel (cancel_on), then the runs they start through flow control.

    Returns the ids of the events that were new, the runs each new event owns, and the fan-outs to
    check after commit. Cancels come before admissions: a transaction locks the runs it ends before
    any ordering key (flow.py), and an event never cancels the runs it starts itself.
    """
    inserted, names, paths, _ = one(conn, "append_events", p.event_params(events, now, if_no_waits=False))
    fresh = set(inserted)
    new = [event for event in events if event.id in fresh]
    resumed, cancels = waiting.resume_waits(conn, new, names, paths, conditions, now)
    fan_outs: list[tuple[str, str]] = []
    cancelled_by: set[str] = set()
    if cancels:
        cancelled, fan_outs = cancel(conn, list(cancels), now)
        cancelled_by = {cancels[run_id] for run_id in cancelled}
    started = {event.id: tuple(r.id for r in event.runs if r.flow is None) for event in new}
    skipped: dict[str, str] = {}
    pairs = [(r, event.id) for event in new for r in event.runs if r.flow is not None]
    for (r, event_id), outcome in zip(pairs, admit(conn, pairs, now) if pairs else [], strict=True):
        if outcome is None or outcome[0] == "folded":
            started[event_id] += (r.id if outcome is None else str(outcome[1]),)
        else:
            skipped.setdefault(event_id, outcome[0])
    changed = [
        (event.id, disposition)
        for event in new
        if (
            disposition := _disposition(
                bool(started[event.id]), event.id in resumed, event.id in cancelled_by, skipped.get(event.id)
            )
        )
        != (Disposition.STARTED if event.runs else Disposition.NO_MATCH)
    ]
    if changed:
        event_ids, dispositions = columns(changed, 2)
        run(conn, "set_dispositions", {"event_ids": event_ids, "dispositions": dispositions})
    return inserted, started, fan_outs


def _disposition(started: bool, resumed: bool, cancelled: bool, skipped: str | None) -> Disposition:
    if started:
        return Disposition.STARTED
    if resumed:
        return Disposition.RESUMED
    if cancelled:
        return Disposition.CANCELLED
    return Disposition(skipped) if skipped else Disposition.NO_MATCH


def admit(conn: Connection, runs: Sequence[tuple[NewRun, str | None]], now: datetime | None) -> list[Outcome]:
    """Admit (run, event id) pairs, in order, in the caller's transaction; returns each one's outcome."""
    outcomes, changes = plan.admit(_locked(conn, [r for r, _ in runs], now), runs)
    _write(conn, changes)
    return outcomes


def _locked(conn: Connection, runs: Sequence[NewRun], now: datetime | None) -> Snapshot:
    """Lock every row these runs may decide on (tables in order, rows in key order) and read them."""
    want = plan.wanted(runs)
    tables = {
        "keys": want.keys,
        "gates": want.gates,
        "idempotency_keys": want.idempotency_keys,
        "debounces": want.debounces,
        "batches": want.batches,
    }
    with conn.pipeline():  # one round trip
        moment = run(conn, "flow_now", {"now": now})
        cursors = {}
        for table, keys in tables.items():
            if keys:
                lock, state, first = _TABLES[table]
                params = {first: [a for a, _ in keys], "keys": [b for _, b in keys], "now": now}
                run(conn, lock, params)
                cursors[table] = run(conn, state, params)
        [(at,)] = moment.fetchall()
        read = {table: cursor.fetchall() for table, cursor in cursors.items()}
    return Snapshot(
        at=at,
        lines={(f, k): Line(head, paused, parked) for f, k, head, paused, parked in read.get("keys", [])},
        tats={(s, k): tat for s, k, tat in read.get("gates", [])},
        idempotency={(f, k): (run_id, expires) for f, k, run_id, expires in read.get("idempotency_keys", [])},
        debounces={(f, k): Pending(r, first, e) for f, k, r, first, e in read.get("debounces", [])},
        batches={(f, k): OpenBatch(r, size, count) for f, k, r, size, count in read.get("batches", [])},
    )


def _write(conn: Connection, changes: Admission) -> None:
    """Write the change-set with set-based statements; placeholders nobody used are dropped."""
    at = changes.at
    if changes.new_runs:
        rows = [
            (r.run.id, r.run.function, r.event_id, r.run.input, r.run.input_name, r.run.parent_id, r.run.replay_of,
             r.run.on_failure, r.run.max_attempts, r.run.priority, r.available_at, r.flags, r.hold, r.note,
             r.flow.ordering_key, r.flow.park_on_dead_letter, r.throttle, r.flow.timeout)
            for r in changes.new_runs
        ]  # fmt: skip
        run(conn, "insert_flow_runs", arrays(_RUN_COLUMNS, rows, now=at))
    if changes.run_slots:
        run(conn, "insert_run_slots", arrays(("run_ids", "scopes", "keys", "limits"), changes.run_slots))
    if changes.cancel_waits:
        names = ("run_ids", "step_ids", "event_names", "match_paths", "match_values", "conditions", "origins")
        waits = [
            (run_id, step_id, w.event_name, w.match_path, w.match_value, w.condition, w.origin)
            for run_id, step_id, w in changes.cancel_waits
        ]
        run(conn, "insert_cancel_waits", arrays(names, waits, now=at))
    lines = [
        (f, k, line.head, line.paused, line.parked)
        for (f, k), line in changes.lines.items()
        if line.changed or (line.head is None and not line.paused)  # a placeholder nobody used: dropped
    ]
    if lines:
        run(conn, "save_keys", arrays(("functions", "keys", "heads", "paused", "parked"), lines))
    if changes.gates_changed:
        turns = [(s, k, changes.tats[(s, k)]) for s, k in sorted(changes.gates_changed)]
        run(conn, "save_gates", arrays(("scopes", "keys", "tats"), turns))
    if changes.idempotency:
        taken = [
            (*key, *(state if key in changes.keys_taken else (None, at))) for key, state in changes.idempotency.items()
        ]
        run(conn, "save_idempotency_keys", arrays(("functions", "keys", "run_ids", "expires"), taken))
    _write_gathering(conn, changes)
    if changes.skips:
        run(conn, "insert_skips", arrays(("event_ids", "functions", "reasons", "run_ids"), changes.skips))
        if debounced := sorted({event_id for event_id, _, reason, _ in changes.skips if reason == "debounced"}):
            run(conn, "mark_debounced", {"event_ids": debounced})


def _write_gathering(conn: Connection, changes: Admission) -> None:
    at = changes.at
    if changes.debounces:
        started = [
            (*key, *((d.run_id, d.first_at) if d and key in changes.debounces_started else (None, at)))
            for key, d in changes.debounces.items()
        ]
        run(conn, "save_debounces", arrays(("functions", "keys", "run_ids", "first_ats"), started))
    if changes.batches:
        filled = [
            (*key, *((b.run_id, b.size, b.count) if b and key in changes.batches_changed else (None, 0, 0)))
            for key, b in changes.batches.items()
        ]
        run(conn, "save_batches", arrays(("functions", "keys", "run_ids", "sizes", "counts"), filled))
    if changes.batch_events:
        run(conn, "insert_batch_events", arrays(("run_ids", "seqs", "event_ids"), changes.batch_events))
    if changes.pushes:
        pushes = [(run_id, event_id, when) for run_id, (event_id, when) in changes.pushes.items()]
        run(conn, "push_pending_runs", arrays(("run_ids", "event_ids", "available_ats"), pushes, now=at))


_RUN_COLUMNS = (
    "run_ids", "functions", "event_ids", "inputs", "input_names", "parent_ids", "replay_ofs", "on_failures",
    "max_attempts", "priorities", "available_ats", "flows", "holds", "notes", "ordering_keys", "parks", "throttles",
    "timeouts",
)  # fmt: skip
