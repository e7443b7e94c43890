"""The SQLite store's step verbs (record_step, register_wait, start_child, time_out_step), as a mixin
of SQLiteStore. Every write is fenced by the lease; a step and the write that goes with it (a wait,
a child) share one write transaction.
"""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from stepwell.errors import LeaseLost
from stepwell.model.records import (
    ErrorInfo,
    Step,
    StepStatus,
)
from stepwell.store.base import (
    Lease,
    NewChild,
    NewWait,
    StepWrite,
)
from stepwell.store.rows import error_bytes, json_or_none, step_from_row
from stepwell.store.sqlite import waiting
from stepwell.store.sqlite.times import micros, moment, moment_or_none, stamp
from stepwell.store.sqlite.waiting import Q


class StepVerbs:
    """record_step, register_wait, start_child, time_out_step (see Store)."""

    if TYPE_CHECKING:

        def _write(self, operation: str) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...
        def _read(self, operation: str) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...
        def _now(self, now: datetime | None) -> int: ...

    def record_step(self, lease: Lease, step: StepWrite, *, now: datetime | None = None) -> Step:
        at = self._now(now)
        with self._write("record_step") as conn:
            return upsert_step(conn, lease, resolve_sleep(step, at), at)

    def register_wait(self, lease: Lease, step: StepWrite, wait: NewWait, *, now: datetime | None = None) -> Step:
        at = self._now(now)
        expires = None if wait.timeout is None else at + micros(wait.timeout)
        write = replace(step, wake_at=moment_or_none(expires), sleep_for=None)
        with self._write("register_wait") as conn:
            written = upsert_step(conn, lease, write, at)
            waiting.insert_wait(conn, lease, step.step_id, wait, expires, at)
        return written

    def start_child(self, lease: Lease, step: StepWrite, child: NewChild, *, now: datetime | None = None) -> Step:
        at = self._now(now)
        with self._write("start_child") as conn:
            written = upsert_step(conn, lease, resolve_sleep(step, at), at)
            waiting.insert_children(conn, lease, step.step_id, [child], at)
        return written

    def time_out_step(
        self, lease: Lease, step_id: str, *, error: ErrorInfo | None, now: datetime | None = None
    ) -> Step:
        at = self._now(now)
        with self._write("time_out_step") as conn:
            row = waiting.time_out(conn, lease, step_id, error, at)
        return step_from_row(row, moment_or_none)


def resolve_sleep(step: StepWrite, at: int) -> StepWrite:
    """A sleep measured by the store's clock: `sleep_for` becomes `wake_at`."""
    if step.wake_at is None and step.sleep_for is not None:
        return replace(step, wake_at=moment(at + micros(step.sleep_for)), sleep_for=None)
    return step


def upsert_step(conn: sqlite3.Connection, lease: Lease, step: StepWrite, at: int) -> Step:
    """Write a step under the lease in the open transaction; LeaseLost when the lease is gone."""
    ended = at if step.status in (StepStatus.COMPLETED, StepStatus.FAILED, StepStatus.ERRORED) else None
    row = conn.execute(
        Q["record_step"],
        {"run_id": lease.run_id, "token": lease.token, "id": step.step_id, "position": step.position,
         "kind": step.kind.value, "status": step.status.value, "output": step.output,
         "error": error_bytes(step.error), "wake_at": stamp(step.wake_at), "now": at, "ended_at": ended,
         "started_at": stamp(step.started_at)},
    ).fetchone()  # fmt: skip
    if row is None:
        raise LeaseLost(f"run {lease.run_id}: lease lost; step {step.step_id!r} was not recorded")
    attempts, started_at = row
    return Step(
        id=step.step_id, kind=step.kind, status=step.status, attempts=attempts, output=json_or_none(step.output),
        error=step.error, started_at=moment_or_none(started_at), ended_at=moment_or_none(ended), wake_at=step.wake_at,
        position=step.position,
    )  # fmt: skip


# waiting: events, children, fan-outs
