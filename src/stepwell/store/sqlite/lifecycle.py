"""How runs come and go in SQLite: inserted (through their flow control), settled, failed into the
dead-letter list, cancelled, rescued, redriven.

Functions over the store's open write transaction: every state change is compare-and-set on the
lease token where a lease exists, and everything a terminal run sets in motion (ordering keys,
concurrency slots, a parent's step, the on_failure run) happens in the same transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from stepwell.model.records import ErrorInfo, FailureReason, RunStatus
from stepwell.store.base import (
    Complete,
    Fail,
    Lease,
    NewEvent,
    NewRun,
    RedriveRequest,
    Release,
    Retry,
    Settlement,
    Suspend,
)
from stepwell.store.failure import failure_handler_input
from stepwell.store.plan.failures import RUN_TIMED_OUT, ExpiredLease, plan_rescue
from stepwell.store.rows import error_bytes, json_or_none
from stepwell.store.sqlite import admission, flow, waiting
from stepwell.store.sqlite.rows import FailedRow, failed_row, flags_of
from stepwell.store.sqlite.times import FOREVER, micros, moment, stamp
from stepwell.store.sqlite.waiting import Q


def insert_runs(conn: sqlite3.Connection, runs: Sequence[NewRun], at: int, *, event_id: str | None) -> None:
    """Runs without flow control: one multi-row statement."""
    conn.executemany(
        Q["insert_run"],
        [
            {"id": r.id, "function": r.function, "event_id": event_id, "input": r.input, "input_name": r.input_name,
             "parent_id": r.parent_id, "replay_of": r.replay_of, "on_failure": r.on_failure,
             "max_attempts": r.max_attempts, "priority": r.priority, "now": at}
            for r in runs
        ],
    )  # fmt: skip


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
    for (run, _), outcome in zip(flowed, admission.admit(conn, flowed, at) if flowed else [], strict=True):
        results[run.id] = (run.id, None) if outcome is None else (outcome[1], outcome[0])
    return [results[run.id] for run in runs]


def insert_event_runs(conn: sqlite3.Connection, events: Sequence[NewEvent], at: int) -> None:
    """The runs without flow control of many new events: one multi-row statement for the whole batch."""
    conn.executemany(
        Q["insert_run"],
        [
            {"id": r.id, "function": r.function, "event_id": e.id, "input": r.input, "input_name": r.input_name,
             "parent_id": r.parent_id, "replay_of": r.replay_of, "on_failure": r.on_failure,
             "max_attempts": r.max_attempts, "priority": r.priority, "now": at}
            for e in events
            for r in e.runs
            if r.flow is None
        ],
    )  # fmt: skip


def admit_event_flow_runs(
    conn: sqlite3.Connection, events: Sequence[NewEvent], at: int
) -> dict[str, tuple[tuple[str, ...], str | None]]:
    """After insert_event_runs: the events' runs with flow control, admitted together in batch order.
    Per event: (the runs it owns, plain ones included; the first reason one of its functions started nothing)."""
    pairs = [(run, event.id) for event in events for run in event.runs if run.flow is not None]
    owned = {event.id: [run.id for run in event.runs if run.flow is None] for event in events}
    skipped: dict[str, str] = {}
    for (run, event_id), outcome in zip(pairs, admission.admit(conn, pairs, at) if pairs else [], strict=True):
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


def settle(conn: sqlite3.Connection, settlement: Settlement, at: int) -> bool:
    """Apply one outcome under its lease; False if the lease was lost."""
    run_id = settlement.lease.run_id
    lease = {"run_id": run_id, "token": settlement.lease.token, "now": at}
    match settlement:
        case Complete(output=output):
            flags = flags_of(conn.execute(Q["complete_run"], {**lease, "output": output}).fetchone())
            if flags is None:
                return False
            finished(conn, run_id, flags, at)
            return True
        case Suspend(until=until, waiting=is_waiting):
            status = RunStatus.WAITING if is_waiting else RunStatus.SLEEPING
            params = {**lease, "until": FOREVER if until is None else stamp(until), "status": status.value}
            flags = flags_of(conn.execute(Q["suspend_run"], params).fetchone())
            if flags is None:
                return False
            flow.left_running(conn, run_id, flags)
            return True
        case Retry(error=error, delay=delay):
            params = {**lease, "error": error_bytes(error), "available_at": at + micros(delay)}
            row = conn.execute(Q["retry_run"], params).fetchone()
            if row is None:
                return False
            failed_attempt, flags = row
            record_error(conn, run_id, failed_attempt, error, at)
            flow.left_running(conn, run_id, flags)
            return True
        case Fail(error=error, reason=reason):
            return fail(conn, settlement.lease, error, reason, at)
        case Release():
            return release(conn, settlement.lease, at)
    raise AssertionError(f"unknown settlement {settlement!r}")


def finished(conn: sqlite3.Connection, run_id: str, flags: int, at: int, *, failed: bool = False) -> None:
    """Everything a run reaching a terminal status sets in motion."""
    if flags & ~flow.CHILD:
        flow.finished(conn, run_id, flags, failed=failed)
    if flags & flow.CHILD:
        waiting.child_finished(conn, run_id, at)


def cancel(conn: sqlite3.Connection, run_id: str, at: int) -> bool:
    flags = flags_of(conn.execute(Q["cancel_run"], {"run_id": run_id, "now": at}).fetchone())
    if flags is None:
        return False
    finished(conn, run_id, flags, at)
    return True


def fail(conn: sqlite3.Connection, lease: Lease, error: ErrorInfo, reason: FailureReason, at: int) -> bool:
    params = {"run_id": lease.run_id, "token": lease.token, "now": at, "error": error_bytes(error)}
    row = failed_row(conn.execute(Q["fail_run"], params).fetchone())
    if row is None:
        return False
    dead_letter(conn, lease.run_id, row, error, reason, at)
    return True


def dead_letter(
    conn: sqlite3.Connection, run_id: str, row: FailedRow, error: ErrorInfo, reason: FailureReason, at: int
) -> None:
    """After a run failed for good: its error history, the dead letter, the on_failure run, and what follows."""
    function, attempt, on_failure, event_id, input_data, input_name, flags = row
    record_error(conn, run_id, attempt, error, at)
    conn.execute(
        Q["upsert_dead_letter"],
        {"run_id": run_id, "function": function, "error": error_bytes(error), "reason": reason.value,
         "attempts": attempt, "now": at},
    )  # fmt: skip
    if on_failure:
        event_name, event_data = _input_of(conn, event_id, input_name, input_data, function)
        handler_run = failure_handler_input(
            run_id=run_id, function=function, handler=on_failure, error=error, event_name=event_name,
            event_data=event_data, now=moment(at),
        )  # fmt: skip
        insert_runs(conn, [handler_run], at, event_id=None)
    finished(conn, run_id, flags, at, failed=True)


def _input_of(
    conn: sqlite3.Connection, event_id: str | None, input_name: str | None, input_data: bytes | None, function: str
) -> tuple[str, Any]:
    if event_id is not None:
        name, data, _ = conn.execute(Q["event_of"], {"id": event_id}).fetchone()
        return name, json_or_none(data)
    return input_name or function, json_or_none(input_data)


def record_error(conn: sqlite3.Connection, run_id: str, attempt: int, error: ErrorInfo, at: int) -> None:
    conn.execute(Q["record_run_error"], {"run_id": run_id, "attempt": attempt, "error": error_bytes(error), "now": at})


def release(conn: sqlite3.Connection, lease: Lease, at: int) -> bool:
    flags = flags_of(
        conn.execute(Q["release_run"], {"run_id": lease.run_id, "token": lease.token, "now": at}).fetchone()
    )
    if flags is not None:
        flow.left_running(conn, lease.run_id, flags)
    return flags is not None


def rescue(conn: sqlite3.Connection, at: int, limit: int) -> int:
    """Requeue runs whose lease expired, counting the attempt; dead-letter those out of attempts."""
    expired = [ExpiredLease(*row) for row in conn.execute(Q["expired_leases"], {"now": at, "limit": limit})]
    for rescued in plan_rescue(expired):
        run_id, token, attempt, error = rescued.lease.run_id, rescued.lease.token, rescued.lease.attempt, rescued.error
        if rescued.dead:
            fail(conn, Lease(run_id, token, moment(at)), error, FailureReason.LEASE_LOST, at)
            continue
        params = {"run_id": run_id, "token": token, "now": at, "error": error_bytes(error)}
        flags = flags_of(conn.execute(Q["requeue_expired"], params).fetchone())
        record_error(conn, run_id, attempt, error, at)
        if flags is not None:
            flow.left_running(conn, run_id, flags)
    return len(expired)


def fail_overdue(conn: sqlite3.Connection, at: int, limit: int) -> int:
    """Fail runs past their whole-run timeout, whoever holds them."""
    failed = 0
    for run_id, _, _ in conn.execute(Q["overdue_runs"], {"now": at, "limit": limit}).fetchall():
        error = RUN_TIMED_OUT
        params = {"run_id": run_id, "now": at, "error": error_bytes(error)}
        row = failed_row(conn.execute(Q["fail_run_unleased"], params).fetchone())
        if row is not None:
            dead_letter(conn, run_id, row, error, FailureReason.TIMED_OUT, at)
            failed += 1
    return failed


def redrive(conn: sqlite3.Connection, request: RedriveRequest, at: int) -> list[str]:
    """Requeue open dead letters from their failed step; an entry already redriven is skipped."""
    if request.parent_id is not None:
        candidates = [row[0] for row in conn.execute(Q["open_dead_children"], {"parent_id": request.parent_id})]
        candidates += [row[0] for row in conn.execute(Q["open_dead_letters_by_id"], {"run_id": request.parent_id})]
    elif request.run_ids:
        candidates = [
            row[0]
            for run_id in request.run_ids
            for row in conn.execute(Q["open_dead_letters_by_id"], {"run_id": run_id}).fetchall()
        ]
    else:
        params = {"function": request.function, "since": stamp(request.since), "limit": request.limit}
        candidates = [row[0] for row in conn.execute(Q["open_dead_letters_by_filter"], params)]
    redriven: list[str] = []
    for run_id in dict.fromkeys(candidates):
        if conn.execute(Q["mark_redriven"], {"run_id": run_id, "now": at}).rowcount != 1:
            continue
        flags = flags_of(conn.execute(Q["requeue_redriven"], {"run_id": run_id, "now": at}).fetchone())
        if flags is not None and flags & flow.ORDERED:
            flow.rejoin_line(conn, run_id)
        conn.execute(Q["reopen_failed_fan_outs"], {"run_id": run_id})
        conn.execute(Q["forget_failed_steps"], {"run_id": run_id})
        redriven.append(run_id)
    return redriven
