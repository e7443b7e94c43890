"""The SQLite store's fan-out verbs, as a mixin of SQLiteStore: open, fill and seal a fan-out, read its
counts and results, and wake parents whose fan-out finished (waiting.py holds the shared parts).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from stepwell.model.records import (
    ChildResult,
    FanOutCounts,
    Step,
)
from stepwell.store.base import (
    Lease,
    NewChild,
    StepWrite,
)
from stepwell.store.sqlite import waiting
from stepwell.store.sqlite.steps import upsert_step
from stepwell.store.sqlite.waiting import Q


class FanOutVerbs:
    """open_fan_out, create_children, seal_fan_out, fan_out_counts, fan_out_results, wake_finished_fan_outs
    (see Store)."""

    if TYPE_CHECKING:

        def _write(self, operation: str) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...
        def _read(self, operation: str) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...
        def _now(self, now: datetime | None) -> int: ...

    def open_fan_out(
        self, lease: Lease, step: StepWrite, *, function: str, tolerate: float, now: datetime | None = None
    ) -> Step:
        at = self._now(now)
        params = {
            "parent_id": lease.run_id,
            "step_id": step.step_id,
            "function": function,
            "tolerate": tolerate,
            "now": at,
        }
        with self._write("open_fan_out") as conn:
            written = upsert_step(conn, lease, step, at)
            conn.execute(Q["open_fan_out"], params)
        return written

    def create_children(
        self, lease: Lease, step_id: str, children: Sequence[NewChild], *, now: datetime | None = None
    ) -> int:
        at = self._now(now)
        with self._write("create_children") as conn:
            waiting.check_lease(conn, lease, f"children of step {step_id!r}")
            return waiting.insert_children(conn, lease, step_id, children, at)

    def seal_fan_out(self, lease: Lease, step_id: str, total: int, *, now: datetime | None = None) -> FanOutCounts:
        at = self._now(now)
        with self._write("seal_fan_out") as conn:
            waiting.check_lease(conn, lease, f"the fan-out of step {step_id!r}")
            conn.execute(Q["seal_fan_out"], {"parent_id": lease.run_id, "step_id": step_id, "total": total})
            waiting.finish_fan_out(conn, lease.run_id, step_id, at)
            return waiting.fan_out_counts(conn, lease.run_id, step_id)

    def fan_out_counts(self, parent_id: str, step_id: str) -> FanOutCounts:
        with self._read("fan_out_counts") as conn:
            return waiting.fan_out_counts(conn, parent_id, step_id)

    def fan_out_results(self, parent_id: str, step_id: str, *, after: int, limit: int) -> list[ChildResult]:
        with self._read("fan_out_results") as conn:
            return waiting.fan_out_page(conn, parent_id, step_id, after, limit)

    def wake_finished_fan_outs(self, *, now: datetime | None = None, limit: int = 100) -> int:
        at = self._now(now)
        with self._write("wake_finished_fan_outs") as conn:
            rows = conn.execute(Q["wake_finished_fan_outs"], {"limit": limit}).fetchall()
            return sum(waiting.finish_fan_out(conn, parent_id, step_id, at) for parent_id, step_id in rows)

    # flow control: keys and timeouts
