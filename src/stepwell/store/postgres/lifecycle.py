"""The PostgreSQL store's run lifecycle verbs, as a mixin of PostgresStore: settle (complete, retry,
suspend, fail), release, rescue expired leases, fail overdue runs, cancel and redrive.

Each verb is one transaction; what it sets in motion (parents of finished children, the next run of
a key or slot, `on_failure` runs) is written in the same transaction, and fan-outs it may have
finished are checked after the commit (waiting.finish_fan_outs).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from stepwell.model.records import FailureReason, RunStatus
from stepwell.store.base import Fail, Lease, RedriveRequest, Settlement
from stepwell.store.failure import failure_handler_input
from stepwell.store.plan.failures import RUN_TIMED_OUT, ExpiredLease, plan_rescue
from stepwell.store.postgres import flow, waiting
from stepwell.store.postgres import params as p
from stepwell.store.postgres.rows import FailedRow, ended_rows, failed_rows, stopped_rows
from stepwell.store.postgres.statements import Connection, one, run
from stepwell.store.rows import error_bytes, error_required, json_or_none


class LifecycleVerbs:
    """settle_runs, release_runs, rescue_expired_leases, fail_overdue_runs, cancel_runs, redrive (see Store)."""

    if TYPE_CHECKING:

        def _connection(
            self, operation: str, caller: object | None = None
        ) -> contextlib.AbstractContextManager[Connection]: ...
        def _at(self, now: datetime | None) -> datetime | None: ...

    def settle_runs(self, settlements: Sequence[Settlement], *, now: datetime | None = None) -> list[str]:
        """One statement per kind of outcome, each for the whole batch, all in one pipelined transaction.

        Releases (attempts interrupted by the store) are release_runs in the same transaction."""
        at = self._at(now)
        if not settlements:
            return []
        with self._connection("settle_runs") as conn:
            with conn.pipeline(), conn.transaction():
                refused, fan_outs = settle(conn, settlements, at)
            waiting.finish_fan_outs(conn, fan_outs, at)
        return refused

    def release_runs(self, leases: Sequence[Lease], *, now: datetime | None = None) -> int:
        if not leases:
            return 0
        with self._connection("release_runs") as conn, conn.pipeline(), conn.transaction():
            released, _, ids, flags = one(conn, "release_runs", {**p.lease_arrays(leases), "now": self._at(now)})
            flow.runs_stopped(conn, left=[(run_id, f) for run_id, f in zip(ids, flags, strict=True) if f])
        return int(released)

    def rescue_expired_leases(self, *, now: datetime | None = None, limit: int = 1000) -> int:
        at = self._at(now)
        with self._connection("rescue_expired_leases") as conn:
            with conn.transaction():
                expired = run(conn, "rescue_expired_leases_find", {"now": at, "limit": limit}).fetchall()
                rescue = plan_rescue([ExpiredLease(*row) for row in expired])
                dead = [
                    Fail(Lease(r.lease.run_id, r.lease.token, datetime.max), r.error, FailureReason.LEASE_LOST)
                    for r in rescue
                    if r.dead
                ]
                requeue = [r for r in rescue if not r.dead]
                left: list[tuple[str, int]] = []
                if requeue:
                    run_ids = [r.lease.run_id for r in requeue]
                    tokens = [r.lease.token for r in requeue]
                    errors = [error_bytes(r.error) for r in requeue]
                    params = {"run_ids": run_ids, "tokens": tokens, "errors": errors, "now": at}
                    _, _, ids, flags = one(conn, "rescue_expired_leases_requeue", params)
                    left = list(zip(ids, flags, strict=True))
                fan_outs: list[tuple[str, str]] = []
                ended: list[tuple[str, int, bool]] = []
                if dead:
                    rows = failed_rows(run(conn, "settle_runs_fail", p.fail_params(dead, at)).fetchall())
                    fan_outs = waiting.children_finished(conn, after_failures(conn, rows, at), at)
                    ended = [(row.run_id, row.flags, True) for row in rows if row.flags]
                flow.runs_stopped(conn, left=left, ended=ended)
            waiting.finish_fan_outs(conn, fan_outs, at)
        return len(expired)

    def cancel_runs(self, run_ids: Sequence[str], *, now: datetime | None = None) -> list[str]:
        at = self._at(now)
        wanted = list(dict.fromkeys(run_ids))
        with self._connection("cancel_runs") as conn:
            with conn.transaction():
                ids, fan_outs = cancel(conn, wanted, at)
            waiting.finish_fan_outs(conn, fan_outs, at)
        cancelled = set(ids)
        return [run_id for run_id in wanted if run_id in cancelled]

    def redrive(self, request: RedriveRequest, *, now: datetime | None = None) -> list[str]:
        """Candidates first; then one statement that locks, re-checks and requeues each open entry once."""
        with self._connection("redrive") as conn:
            if request.parent_id is not None:
                rows = run(conn, "redrive_family", {"parent_id": request.parent_id}).fetchall()
                candidates = list(dict.fromkeys(run_id for (run_id,) in rows))
            elif request.run_ids:
                candidates = list(dict.fromkeys(request.run_ids))
            else:
                params = {"function": request.function, "since": request.since, "limit": request.limit}
                candidates = [run_id for (run_id,) in run(conn, "redrive_by_filter", params).fetchall()]
            if not candidates:
                return []
            with conn.transaction():
                marked, _, ordered = one(conn, "redrive", {"run_ids": candidates, "now": self._at(now)})
                if ordered:
                    flow.rejoin_line(conn, ordered)
        redriven = set(marked)
        return [run_id for run_id in candidates if run_id in redriven]

    # reading

    def fail_overdue_runs(self, *, now: datetime | None = None, limit: int = 1000) -> int:
        """A run's lease does not protect it from its whole-run timeout: settle_runs_fail without a token."""
        at = self._at(now)
        error = error_bytes(RUN_TIMED_OUT)
        with self._connection("fail_overdue_runs") as conn:
            with conn.transaction():
                overdue = [
                    run_id for (run_id,) in run(conn, "fail_overdue_runs", {"now": at, "limit": limit}).fetchall()
                ]
                reasons = [FailureReason.TIMED_OUT.value] * len(overdue)
                params = {"run_ids": overdue, "tokens": [None] * len(overdue), "errors": [error] * len(overdue)}
                fail = {**params, "reasons": reasons, "now": at}
                rows = failed_rows(run(conn, "settle_runs_fail", fail).fetchall()) if overdue else []
                fan_outs = waiting.children_finished(conn, after_failures(conn, rows, at), at)
                flow.runs_stopped(conn, ended=[(row.run_id, row.flags, True) for row in rows if row.flags])
            waiting.finish_fan_outs(conn, fan_outs, at)
        return len(rows)

    # settling


def settle(
    conn: Connection, settlements: Sequence[Settlement], at: datetime | None
) -> tuple[list[str], list[tuple[str, str]]]:
    """Apply the outcomes in the open (pipelined) transaction: one statement per kind of outcome, for the
    whole batch. Returns the runs whose outcome was refused (lease lost) and the fan-outs to check after
    the commit. Shared by settle_runs and settle_and_claim."""
    plan = p.settlement_plan(settlements, at)
    settled: set[str] = set()
    cursors = [(name, run(conn, name, params)) for name, params in plan]
    finished: list[waiting.Finished] = []
    left: list[tuple[str, int]] = []  # (run, flags) that stopped running
    ended: list[tuple[str, int, bool]] = []  # (run, flags, failed) that reached a terminal status
    for name, cursor in cursors:
        raw = cursor.fetchall()
        if name == "settle_runs_complete":
            completed = ended_rows(raw)
            settled.update(row.run_id for row in completed)
            finished += waiting.finished_rows(completed, RunStatus.COMPLETED)
            ended += [(row.run_id, row.flags, False) for row in completed if row.flags]
        elif name == "settle_runs_fail":
            failed = failed_rows(raw)
            settled.update(row.run_id for row in failed)
            finished += after_failures(conn, failed, at)
            ended += [(row.run_id, row.flags, True) for row in failed if row.flags]
        else:  # suspended, retried, released
            if name == "release_runs":  # one row: (count, notified, ids, flags)
                [(_, _, ids, flags)] = raw
                raw = list(zip(ids, flags, strict=True))
            stopped = stopped_rows(raw)
            settled.update(row.run_id for row in stopped)
            left += [(row.run_id, row.flags) for row in stopped if row.flags]
    fan_outs = waiting.children_finished(conn, finished, at)
    flow.runs_stopped(conn, left=left, ended=ended)
    return [s.lease.run_id for s in settlements if s.lease.run_id not in settled], fan_outs


def cancel(conn: Connection, run_ids: list[str], at: datetime | None) -> tuple[list[str], list[tuple[str, str]]]:
    """Cancel unfinished runs and what that sets in motion (parents, flow control), in the open transaction;
    returns the runs cancelled and the fan-outs to check after the commit."""
    rows = ended_rows(run(conn, "cancel_runs", {"run_ids": run_ids, "now": at}).fetchall())
    finished = waiting.finished_rows(rows, RunStatus.CANCELLED)
    fan_outs = waiting.children_finished(conn, finished, at)
    flow.runs_stopped(conn, ended=[(row.run_id, row.flags, False) for row in rows if row.flags])
    return [row.run_id for row in rows], fan_outs


def after_failures(conn: Connection, rows: Sequence[FailedRow], at: datetime | None) -> list[waiting.Finished]:
    """Queue the `on_failure` run of each failed run that has one, in the failure's transaction."""
    handlers = [
        failure_handler_input(
            run_id=row.run_id,
            function=row.function,
            handler=row.on_failure,
            error=error_required(row.error),
            event_name=row.event_name,
            event_data=json_or_none(row.event_data),
            now=at or row.failed_at,
        )
        for row in rows
        if row.on_failure
    ]
    if handlers:
        run(conn, "create_runs", p.unnested(p.run_params(handlers, at)))
    return waiting.finished_rows(rows, RunStatus.FAILED)
