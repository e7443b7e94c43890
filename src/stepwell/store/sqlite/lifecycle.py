"""The SQLite store's run lifecycle verbs, as a mixin of SQLiteStore: runs settled, failed into the
dead-letter list, released, rescued, timed out, cancelled, redriven.

Functions over the store's open write transaction: every state change is compare-and-set on the
lease token where a lease exists, and everything a terminal run sets in motion (ordering keys,
concurrency slots, a parent's step, the on_failure run) happens in the same transaction.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from stepwell.model.records import (
    ErrorInfo,
    FailureReason,
    RunStatus,
)
from stepwell.store.base import (
    Complete,
    Fail,
    Lease,
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


class LifecycleVerbs:
    """settle_runs, release_runs, rescue_expired_leases, fail_overdue_runs, cancel_runs, redrive (see Store)."""

    if TYPE_CHECKING:

        def _write(self, operation: str) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...
        def _read(self, operation: str) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...
        def _now(self, now: datetime | None) -> int: ...

    def settle_runs(self, settlements: Sequence[Settlement], *, now: datetime | None = None) -> list[str]:
        at = self._now(now)
        with self._write("settle_runs") as conn:
            return [s.lease.run_id for s in settlements if not settle(conn, s, at)]

    def release_runs(self, leases: Sequence[Lease], *, now: datetime | None = None) -> int:
        at = self._now(now)
        with self._write("release_runs") as conn:
            return sum(release(conn, lease, at) for lease in leases)

    def rescue_expired_leases(self, *, now: datetime | None = None, limit: int = 1000) -> int:
        at = self._now(now)
        with self._write("rescue_expired_leases") as conn:
            return rescue(conn, at, limit)

    def cancel_runs(self, run_ids: Sequence[str], *, now: datetime | None = None) -> list[str]:
        at = self._now(now)
        with self._write("cancel_runs") as conn:
            return [run_id for run_id in dict.fromkeys(run_ids) if cancel(conn, run_id, at)]

    def redrive(self, request: RedriveRequest, *, now: datetime | None = None) -> list[str]:
        at = self._now(now)
        with self._write("redrive") as conn:
            return redrive(conn, request, at)

    # steps

    def fail_overdue_runs(self, *, now: datetime | None = None, limit: int = 1000) -> int:
        at = self._now(now)
        with self._write("fail_overdue_runs") as conn:
            return fail_overdue(conn, at, limit)


def settle(conn: sqlite3.Connection, settlement: Settlement, at: int) -> bool:
    """Apply one outcome under its lease; False if the lease was lost."""
    run_id = settlement.lease.run_id
    lease = {"run_id": run_id, "token": settlement.lease.token, "now": at}
    match settlement:
        case Complete(output=output):
            flags = flags_of(conn.execute(Q["settle_runs_complete"], {**lease, "output": output}).fetchone())
            if flags is None:
                return False
            finished(conn, run_id, flags, at)
            return True
        case Suspend(until=until, waiting=is_waiting):
            status = RunStatus.WAITING if is_waiting else RunStatus.SLEEPING
            params = {**lease, "until": FOREVER if until is None else stamp(until), "status": status.value}
            flags = flags_of(conn.execute(Q["settle_runs_suspend"], params).fetchone())
            if flags is None:
                return False
            flow.left_running(conn, run_id, flags)
            return True
        case Retry(error=error, delay=delay):
            params = {**lease, "error": error_bytes(error), "available_at": at + micros(delay)}
            row = conn.execute(Q["settle_runs_retry"], params).fetchone()
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
    flags = flags_of(conn.execute(Q["cancel_runs"], {"run_id": run_id, "now": at}).fetchone())
    if flags is None:
        return False
    finished(conn, run_id, flags, at)
    return True


def fail(conn: sqlite3.Connection, lease: Lease, error: ErrorInfo, reason: FailureReason, at: int) -> bool:
    params = {"run_id": lease.run_id, "token": lease.token, "now": at, "error": error_bytes(error)}
    row = failed_row(conn.execute(Q["settle_runs_fail"], params).fetchone())
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
        Q["settle_runs_dead_letter"],
        {"run_id": run_id, "function": function, "error": error_bytes(error), "reason": reason.value,
         "attempts": attempt, "now": at},
    )  # fmt: skip
    if on_failure:
        event_name, event_data = _input_of(conn, event_id, input_name, input_data, function)
        handler_run = failure_handler_input(
            run_id=run_id, function=function, handler=on_failure, error=error, event_name=event_name,
            event_data=event_data, now=moment(at),
        )  # fmt: skip
        admission.insert_runs(conn, [handler_run], at, event_id=None)
    finished(conn, run_id, flags, at, failed=True)


def _input_of(
    conn: sqlite3.Connection, event_id: str | None, input_name: str | None, input_data: bytes | None, function: str
) -> tuple[str, Any]:
    if event_id is not None:
        name, data, _ = conn.execute(Q["settle_runs_event"], {"id": event_id}).fetchone()
        return name, json_or_none(data)
    return input_name or function, json_or_none(input_data)


def record_error(conn: sqlite3.Connection, run_id: str, attempt: int, error: ErrorInfo, at: int) -> None:
    conn.execute(Q["settle_runs_error"], {"run_id": run_id, "attempt": attempt, "error": error_bytes(error), "now": at})


def release(conn: sqlite3.Connection, lease: Lease, at: int) -> bool:
    flags = flags_of(
        conn.execute(Q["release_runs"], {"run_id": lease.run_id, "token": lease.token, "now": at}).fetchone()
    )
    if flags is not None:
        flow.left_running(conn, lease.run_id, flags)
    return flags is not None


def rescue(conn: sqlite3.Connection, at: int, limit: int) -> int:
    """Requeue runs whose lease expired, counting the attempt; dead-letter those out of attempts."""
    expired = [ExpiredLease(*row) for row in conn.execute(Q["rescue_expired_leases_find"], {"now": at, "limit": limit})]
    for rescued in plan_rescue(expired):
        run_id, token, attempt, error = rescued.lease.run_id, rescued.lease.token, rescued.lease.attempt, rescued.error
        if rescued.dead:
            fail(conn, Lease(run_id, token, moment(at)), error, FailureReason.LEASE_LOST, at)
            continue
        params = {"run_id": run_id, "token": token, "now": at, "error": error_bytes(error)}
        flags = flags_of(conn.execute(Q["rescue_expired_leases_requeue"], params).fetchone())
        record_error(conn, run_id, attempt, error, at)
        if flags is not None:
            flow.left_running(conn, run_id, flags)
    return len(expired)


def fail_overdue(conn: sqlite3.Connection, at: int, limit: int) -> int:
    """Fail runs past their whole-run timeout, whoever holds them."""
    failed = 0
    for run_id, _, _ in conn.execute(Q["fail_overdue_runs"], {"now": at, "limit": limit}).fetchall():
        error = RUN_TIMED_OUT
        params = {"run_id": run_id, "now": at, "error": error_bytes(error)}
        row = failed_row(conn.execute(Q["fail_overdue_runs_fail"], params).fetchone())
        if row is not None:
            dead_letter(conn, run_id, row, error, FailureReason.TIMED_OUT, at)
            failed += 1
    return failed


def redrive(conn: sqlite3.Connection, request: RedriveRequest, at: int) -> list[str]:
    """Requeue open dead letters from their failed step; an entry already redriven is skipped."""
    if request.parent_id is not None:
        candidates = [child for (child,) in conn.execute(Q["redrive_children"], {"parent_id": request.parent_id})]
        candidates += [parent for (parent,) in conn.execute(Q["redrive_by_id"], {"run_id": request.parent_id})]
    elif request.run_ids:
        candidates = [
            open_id for run_id in request.run_ids for (open_id,) in conn.execute(Q["redrive_by_id"], {"run_id": run_id})
        ]
    else:
        params = {"function": request.function, "since": stamp(request.since), "limit": request.limit}
        candidates = [run_id for (run_id,) in conn.execute(Q["redrive_by_filter"], params)]
    redriven: list[str] = []
    for run_id in dict.fromkeys(candidates):
        if conn.execute(Q["redrive_mark"], {"run_id": run_id, "now": at}).rowcount != 1:
            continue
        flags = flags_of(conn.execute(Q["redrive"], {"run_id": run_id, "now": at}).fetchone())
        if flags is not None and flags & flow.ORDERED:
            flow.rejoin_line(conn, run_id)
        conn.execute(Q["redrive_fan_outs"], {"run_id": run_id})
        conn.execute(Q["redrive_forget_steps"], {"run_id": run_id})
        redriven.append(run_id)
    return redriven
