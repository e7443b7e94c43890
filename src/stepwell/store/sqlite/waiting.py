"""The SQLite transactions of waiting: event waits, invoked children, fan-outs.

Functions over an open write transaction; `SQLiteStore` opens it and delegates here.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from stepwell.errors import LeaseLost
from stepwell.model.records import ChildResult, Disposition, ErrorInfo, FanOutCounts, RunStatus, StepStatus
from stepwell.store.base import ConditionCheck, Lease, NewChild, NewEvent, NewWait
from stepwell.store.plan import waits
from stepwell.store.rows import error_bytes, error_or_none, json_or_none
from stepwell.store.sqlfile import load_queries

Q = load_queries("stepwell.store.sqlite")
W = load_queries("stepwell.store.sqlite", "waiting.sql")  # the machinery several verbs run


def check_lease(conn: sqlite3.Connection, lease: Lease, what: str) -> None:
    if conn.execute(W["lease_held"], {"run_id": lease.run_id, "token": lease.token}).fetchone() is None:
        raise LeaseLost(f"run {lease.run_id}: lease lost; {what} was not written")


def insert_wait(
    conn: sqlite3.Connection, lease: Lease, step_id: str, wait: NewWait, expires: int | None, at: int
) -> None:
    conn.execute(
        Q["register_wait"],
        {
            "run_id": lease.run_id,
            "step_id": step_id,
            "event_name": wait.event_name,
            "match_path": wait.match_path,
            "match_value": wait.match_value,
            "condition": wait.condition,
            "origin": wait.origin,
            "expires_at": expires,
            "now": at,
        },
    )


def resume_waits(
    conn: sqlite3.Connection,
    events: Sequence[NewEvent],
    stored: Sequence[bool],
    conditions: ConditionCheck | None,
    at: int,
    *,
    cancel: Callable[[sqlite3.Connection, str, int], bool],
) -> dict[str, Disposition]:
    """Resolve the waits these newly stored events match, and cancel the runs whose cancel_on they match.

    Returns, per event that resumed or cancelled something, `resumed` (it resumed a wait) or `cancelled`.
    """
    paths_by_name: dict[str, list[str | None]] = {}
    matches = waits.WaitMatches(conditions)
    for event, is_new in zip(events, stored, strict=True):
        if not is_new:
            continue
        if event.name not in paths_by_name:
            found = conn.execute(W["wait_paths"], {"name": event.name})
            paths_by_name[event.name] = [path for (path,) in found]
        paths = paths_by_name[event.name]
        if not paths:
            continue
        new = waits.offered(event)
        for path, value in waits.lookups(new, paths):
            rows = conn.execute(W["waits_matching"], {"name": event.name, "path": path, "value": value}).fetchall()
            matches.offer(new, rows)
    resumed: dict[str, Disposition] = {}
    for (run_id, step_id), (event_id, output) in matches.resolve.items():
        if resolve_step(conn, run_id, step_id, StepStatus.COMPLETED, output, None, at):
            conn.execute(W["delete_wait"], {"run_id": run_id, "step_id": step_id})
            resumed[event_id] = Disposition.RESUMED
    for run_id, event_id in matches.cancel.items():
        if cancel(conn, run_id, at):
            resumed.setdefault(event_id, Disposition.CANCELLED)
    return resumed


def resolve_step(
    conn: sqlite3.Connection,
    run_id: str,
    step_id: str,
    status: StepStatus,
    output: bytes | None,
    error: ErrorInfo | None,
    at: int,
) -> bool:
    """Settle a waiting step from outside its run and wake the run; False if it was no longer waiting."""
    changed = conn.execute(
        W["resolve_step"],
        {
            "run_id": run_id,
            "step_id": step_id,
            "status": status.value,
            "output": output,
            "error": error_bytes(error),
            "now": at,
        },
    ).rowcount
    if changed:
        conn.execute(W["wake_run"], {"run_id": run_id, "now": at})
    return bool(changed)


def insert_children(conn: sqlite3.Connection, lease: Lease, step_id: str, children: Sequence[NewChild], at: int) -> int:
    before = conn.total_changes
    conn.executemany(
        W["create_children"],
        [
            {
                "id": c.run.id,
                "function": c.run.function,
                "input": c.run.input,
                "input_name": c.run.input_name,
                "parent_id": lease.run_id,
                "parent_step": step_id,
                "child_index": c.index,
                "on_failure": c.run.on_failure,
                "max_attempts": c.run.max_attempts,
                "priority": c.run.priority,
                "now": at,
            }
            for c in children
        ],
    )
    return conn.total_changes - before


def child_finished(conn: sqlite3.Connection, run_id: str, at: int) -> None:
    """A run reached a terminal status: resolve its parent's invoke step, or check its fan-out's last child."""
    row = conn.execute(W["child_link"], {"id": run_id}).fetchone()
    if row is None:
        return
    parent_id, parent_step, child_index, status, output, error = row
    if parent_id is None:
        return
    if child_index is None:
        if status == RunStatus.COMPLETED:
            resolve_step(conn, parent_id, parent_step, StepStatus.COMPLETED, output, None, at)
        else:
            failure = error_or_none(error) or ErrorInfo("Cancelled", f"child run {run_id} was cancelled")
            resolve_step(conn, parent_id, parent_step, StepStatus.FAILED, None, failure, at)
        return
    finish_fan_out(conn, parent_id, parent_step, at)


def finish_fan_out(conn: sqlite3.Connection, parent_id: str, step_id: str, at: int) -> bool:
    """Mark the fan-out done once, if sealed and no child is unfinished, and wake the parent."""
    done = conn.execute(W["fan_out_finished"], {"parent_id": parent_id, "step_id": step_id, "now": at}).rowcount
    if done:
        conn.execute(W["wake_run"], {"run_id": parent_id, "now": at})
    return bool(done)


def fan_out_counts(conn: sqlite3.Connection, parent_id: str, step_id: str) -> FanOutCounts:
    fan_out = {"parent_id": parent_id, "step_id": step_id}
    total, done_at = conn.execute(W["fan_out_counts_total"], fan_out).fetchone() or (None, None)
    by_status: dict[str, int] = dict(conn.execute(W["fan_out_counts"], fan_out))
    return FanOutCounts(
        total=total,
        queued=sum(by_status.get(s, 0) for s in ("queued", "sleeping", "waiting")),
        running=by_status.get("running", 0),
        completed=by_status.get("completed", 0),
        failed=by_status.get("failed", 0),
        cancelled=by_status.get("cancelled", 0),
        done=done_at is not None,
    )


def fan_out_page(conn: sqlite3.Connection, parent_id: str, step_id: str, after: int, limit: int) -> list[ChildResult]:
    rows = conn.execute(
        Q["fan_out_results"], {"parent_id": parent_id, "step_id": step_id, "after": after, "limit": limit}
    ).fetchall()
    return [
        ChildResult(index, run_id, RunStatus(status), json_or_none(output), error_or_none(error))
        for index, run_id, status, output, error in rows
    ]


def time_out(conn: sqlite3.Connection, lease: Lease, step_id: str, error: ErrorInfo | None, at: int) -> Any:
    """End a waiting step at its timeout; returns the step row as it is afterwards."""
    check_lease(conn, lease, f"the timeout of step {step_id!r}")
    status = StepStatus.COMPLETED if error is None else StepStatus.FAILED
    if conn.execute(
        W["resolve_step"],
        {
            "run_id": lease.run_id,
            "step_id": step_id,
            "status": status.value,
            "output": None,
            "error": error_bytes(error),
            "now": at,
        },
    ).rowcount:
        conn.execute(W["delete_wait"], {"run_id": lease.run_id, "step_id": step_id})
        child = conn.execute(W["invoked_child"], {"parent_id": lease.run_id, "step_id": step_id}).fetchone()
        if child is not None:
            conn.execute(Q["cancel_runs"], {"run_id": child[0], "now": at}).fetchall()
    return conn.execute(Q["time_out_step_resolved"], {"run_id": lease.run_id, "step_id": step_id}).fetchone()
