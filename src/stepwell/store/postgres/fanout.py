"""The PostgreSQL store's fan-out verbs, as a mixin of PostgresStore: open, fill and seal a fan-out,
read its counts and results, and wake parents whose fan-out finished (waiting.py holds the shared parts)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from stepwell.errors import LeaseLost
from stepwell.model.records import ChildResult, FanOutCounts, Step
from stepwell.store.base import Lease, NewChild, StepWrite
from stepwell.store.postgres import params as p
from stepwell.store.postgres import waiting
from stepwell.store.postgres.statements import Connection, one, run


class FanOutVerbs:
    """open_fan_out, create_children, seal_fan_out, fan_out_counts, fan_out_results, wake_finished_fan_outs
    (see Store)."""

    if TYPE_CHECKING:

        def _connection(
            self, operation: str, caller: object | None = None
        ) -> contextlib.AbstractContextManager[Connection]: ...
        def _at(self, now: datetime | None) -> datetime | None: ...
        def _record_step_and(
            self, operation: str, lease: Lease, step: StepWrite, at: datetime | None, name: str, params: dict[str, Any]
        ) -> Step: ...

    def open_fan_out(
        self, lease: Lease, step: StepWrite, *, function: str, tolerate: float, now: datetime | None = None
    ) -> Step:
        at = self._at(now)
        params = {
            "run_id": lease.run_id,
            "token": lease.token,
            "step_id": step.step_id,
            "function": function,
            "tolerate": tolerate,
            "now": at,
        }
        return self._record_step_and("open_fan_out", lease, step, at, "open_fan_out", params)

    def create_children(
        self, lease: Lease, step_id: str, children: Sequence[NewChild], *, now: datetime | None = None
    ) -> int:
        with self._connection("create_children") as conn:
            held, created, _ = one(conn, "create_children", p.children_params(lease, step_id, children, self._at(now)))
        if not held:
            raise LeaseLost(f"run {lease.run_id}: lease lost; children of step {step_id!r} were not written")
        return int(created)

    def seal_fan_out(self, lease: Lease, step_id: str, total: int, *, now: datetime | None = None) -> FanOutCounts:
        at = self._at(now)
        with self._connection("seal_fan_out") as conn:
            params = {"run_id": lease.run_id, "token": lease.token, "step_id": step_id, "total": total}
            if not one(conn, "seal_fan_out", params)[0]:
                raise LeaseLost(f"run {lease.run_id}: lease lost; the fan-out of step {step_id!r} was not written")
            waiting.finish_fan_outs(conn, [(lease.run_id, step_id)], at)  # after the seal's commit
            return waiting.fan_out_counts(conn, lease.run_id, step_id)

    def fan_out_counts(self, parent_id: str, step_id: str) -> FanOutCounts:
        with self._connection("fan_out_counts") as conn:
            return waiting.fan_out_counts(conn, parent_id, step_id)

    def fan_out_results(self, parent_id: str, step_id: str, *, after: int, limit: int) -> list[ChildResult]:
        with self._connection("fan_out_results") as conn:
            return waiting.fan_out_page(conn, parent_id, step_id, after, limit)

    def wake_finished_fan_outs(self, *, now: datetime | None = None, limit: int = 100) -> int:
        with self._connection("wake_finished_fan_outs") as conn:
            found = run(conn, "wake_finished_fan_outs", {"limit": limit}).fetchall()
            candidates = [(parent_id, step_id) for parent_id, step_id in found]
            return waiting.finish_fan_outs(conn, candidates, self._at(now))

    # flow control: keys and timeouts
