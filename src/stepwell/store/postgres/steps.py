"""The PostgreSQL store's step verbs (record_step, register_wait, start_child, time_out_step), as a mixin
of PostgresStore. Every write is fenced by the lease: a step and the write that goes with it (a wait,
a child) travel in one pipelined transaction.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from stepwell.errors import LeaseLost
from stepwell.model.records import ErrorInfo, Step, StepStatus
from stepwell.store.base import Lease, NewChild, NewWait, StepWrite
from stepwell.store.postgres import flow
from stepwell.store.postgres import params as p
from stepwell.store.postgres.rows import timed_out_row
from stepwell.store.postgres.statements import Connection, one, run, same
from stepwell.store.rows import error_bytes, step_from_row


class StepVerbs:
    """record_step, register_wait, start_child, time_out_step (see Store)."""

    if TYPE_CHECKING:

        def _connection(
            self, operation: str, caller: object | None = None
        ) -> contextlib.AbstractContextManager[Connection]: ...
        def _at(self, now: datetime | None) -> datetime | None: ...

    def record_step(self, lease: Lease, step: StepWrite, *, now: datetime | None = None) -> Step:
        with self._connection("record_step") as conn:
            row = run(conn, "record_step", p.step_params(lease, step, self._at(now))).fetchone()
        if row is None:
            raise LeaseLost(f"run {lease.run_id}: lease lost; step {step.step_id!r} was not recorded")
        return p.written_step(step, row)

    def _record_step_and(
        self, operation: str, lease: Lease, step: StepWrite, at: datetime | None, name: str, params: dict[str, Any]
    ) -> Step:
        """A step and one more fenced write in one transaction (one round trip, pipelined)."""
        with self._connection(operation) as conn, conn.pipeline(), conn.transaction():
            written = run(conn, "record_step", p.step_params(lease, step, at))
            run(conn, name, params)
            row = written.fetchone()
        if row is None:
            raise LeaseLost(f"run {lease.run_id}: lease lost; step {step.step_id!r} was not recorded")
        return p.written_step(step, row)

    # waiting: events, children, fan-outs

    def register_wait(self, lease: Lease, step: StepWrite, wait: NewWait, *, now: datetime | None = None) -> Step:
        at = self._at(now)
        params = {
            "run_id": lease.run_id,
            "token": lease.token,
            "step_id": step.step_id,
            "event_name": wait.event_name,
            "match_path": wait.match_path,
            "match_value": wait.match_value,
            "condition": wait.condition,
            "origin": wait.origin,
            "timeout": wait.timeout,
            "now": at,
        }
        write = replace(step, wake_at=None, sleep_for=wait.timeout)  # wake_at: the timeout, by the store's clock
        return self._record_step_and("register_wait", lease, write, at, "register_wait", params)

    def start_child(self, lease: Lease, step: StepWrite, child: NewChild, *, now: datetime | None = None) -> Step:
        at = self._at(now)
        params = p.children_params(lease, step.step_id, [child], at)
        return self._record_step_and("start_child", lease, step, at, "create_children", params)

    def time_out_step(
        self, lease: Lease, step_id: str, *, error: ErrorInfo | None, now: datetime | None = None
    ) -> Step:
        params = {
            "run_id": lease.run_id,
            "token": lease.token,
            "step_id": step_id,
            "status": (StepStatus.COMPLETED if error is None else StepStatus.FAILED).value,
            "error": error_bytes(error),
            "now": self._at(now),
        }
        with self._connection("time_out_step") as conn:
            with conn.transaction():
                row = run(conn, "time_out_step", params).fetchone()
                timed_out = None if row is None else timed_out_row(row)
                if timed_out is None or not timed_out.held:
                    raise LeaseLost(f"run {lease.run_id}: lease lost; the timeout of step {step_id!r} was not written")
                if timed_out.child_flags:  # the invoked child it cancelled has flow control
                    flow.runs_stopped(conn, ended=[(timed_out.child, timed_out.child_flags, False)])
            step = step_from_row(timed_out.step, same)
            if step.status == StepStatus.WAITING:  # resolved by a concurrent event after this statement's snapshot
                resolved = one(conn, "time_out_step_resolved", {"run_id": lease.run_id, "step_id": step_id})
                step = step_from_row(resolved, same)
        return step
