"""The SQLite store's read verbs (runs, inputs, events, dead letters, queue stats), as a mixin of
SQLiteStore, on a reader connection of its own.

Pages of runs that an index serves, whatever the filter: the statement is picked by its most
selective filter (an event's runs are few, a status's many), and the others filter what it reads
(browse.sql)."""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from stepwell.model.records import DeadLetter, Disposition, ErrorInfo, EventRecord, FailureReason, Run, RunStatus, Step
from stepwell.store.base import QueueStats, RunFilter
from stepwell.store.rows import error_or_none, error_required, json_or_none, step_from_row
from stepwell.store.sqlfile import load_queries
from stepwell.store.sqlite import flow
from stepwell.store.sqlite.times import FOREVER, moment, moment_or_none, stamp
from stepwell.store.sqlite.waiting import Q

B = load_queries("stepwell.store.sqlite", "browse.sql")


class ReadVerbs:
    """get_run, list_runs, get_run_input, get_event, list_dead_letters, queue_stats (see Store)."""

    if TYPE_CHECKING:

        def _write(self, operation: str) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...
        def _read(self, operation: str) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...
        def _now(self, now: datetime | None) -> int: ...

    def get_run(self, run_id: str) -> Run | None:
        with self._read("get_run") as conn:
            return get_run(conn, run_id, self._now(None))

    def list_runs(self, query: RunFilter) -> list[Run]:
        with self._read("list_runs") as conn:
            return list_runs(conn, query)

    def get_run_input(self, run_id: str) -> tuple[str, bytes] | None:
        with self._read("get_run_input") as conn:
            return run_input(conn, run_id)

    def get_event(self, event_id: str) -> EventRecord | None:
        with self._read("get_event") as conn:
            return get_event(conn, event_id)

    def list_dead_letters(self, *, function: str | None = None, limit: int = 100) -> list[DeadLetter]:
        with self._read("list_dead_letters") as conn:
            return list_dead_letters(conn, function, limit)

    def queue_stats(self, *, now: datetime | None = None) -> QueueStats:
        with self._read("queue_stats") as conn:
            return queue_stats(conn, self._now(now))


def get_run(conn: sqlite3.Connection, run_id: str, now: int) -> Run | None:
    row = conn.execute(Q["get_run"], {"id": run_id}).fetchone()
    if row is None:
        return None
    steps = tuple(step_from_row(r, moment_or_none) for r in conn.execute(Q["get_run_steps"], {"run_id": run_id}))
    errors = tuple(e for (data,) in conn.execute(Q["get_run_errors"], {"run_id": run_id}) if (e := error_or_none(data)))
    return replace(run_from_row(row, steps, errors), waiting_reason=flow.explain(conn, run_id, now))


def list_runs(conn: sqlite3.Connection, query: RunFilter) -> list[Run]:
    params = {
        "event_id": query.event_id,
        "function": query.function,
        "status": query.status.value if query.status else None,
        "parent_id": query.parent_id,
        "limit": query.limit,
        "ordering_key": query.ordering_key,
        "created_after": stamp(query.created_after),
        "created_before": stamp(query.created_before),
        "page_at": stamp(query.page_after[0]) if query.page_after else None,
        "page_id": query.page_after[1] if query.page_after else None,
    }
    return [run_from_row(row) for row in conn.execute(B[statement_for(query)], params)]


def run_input(conn: sqlite3.Connection, run_id: str) -> tuple[str, bytes] | None:
    row = conn.execute(Q["get_run_input"], {"id": run_id}).fetchone()
    if row is None:
        return None
    name, data = row
    return None if data is None else (name, data)  # None: a run with neither an event nor an input of its own


def get_event(conn: sqlite3.Connection, event_id: str) -> EventRecord | None:
    row = conn.execute(Q["get_event"], {"id": event_id}).fetchone()
    if row is None:
        return None
    run_ids = tuple(run_id for (run_id,) in conn.execute(Q["get_event_runs"], {"event_id": event_id}))
    skipped = tuple((fn, reason, run) for fn, reason, run in conn.execute(Q["get_event_skips"], {"event_id": event_id}))
    event_id_, name, data, ts, received_at, disposition = row
    return EventRecord(
        event_id_, name, json_or_none(data), moment(ts), moment(received_at), Disposition(disposition), run_ids, skipped
    )


def list_dead_letters(conn: sqlite3.Connection, function: str | None, limit: int) -> list[DeadLetter]:
    rows = conn.execute(Q["list_dead_letters"], {"function": function, "limit": limit}).fetchall()
    return [
        DeadLetter(
            run_id, fn, error_required(error), FailureReason(reason), moment(failed_at), attempts, count, key, policy
        )
        for run_id, fn, error, reason, failed_at, attempts, count, key, policy in rows
    ]


def queue_stats(conn: sqlite3.Connection, now: int) -> QueueStats:
    ready, scheduled, running, dead, next_due = conn.execute(
        Q["queue_stats"], {"now": now, "forever": FOREVER}
    ).fetchone()
    return QueueStats(ready, scheduled, running, dead, moment_or_none(next_due))


def run_from_row(row: Any, steps: tuple[Step, ...] = (), errors: tuple[ErrorInfo, ...] = ()) -> Run:
    (run_id, function, status, attempt, max_attempts, event_id, parent_id, created_at, started_at, ended_at,
     available_at, output, error, replay_of, ordering_key) = row  # fmt: skip
    return Run(
        id=run_id, function=function, status=RunStatus(status), attempt=attempt, max_attempts=max_attempts,
        event_id=event_id, parent_id=parent_id, created_at=moment(created_at), started_at=moment_or_none(started_at),
        ended_at=moment_or_none(ended_at), available_at=moment_or_none(available_at), output=json_or_none(output),
        error=error_or_none(error), replay_of=replay_of, steps=steps, errors=errors, ordering_key=ordering_key,
    )  # fmt: skip


def statement_for(query: RunFilter) -> str:
    """The name of the statement whose leading, indexed filter is the query's most selective one."""
    if query.event_id is not None:
        return "list_runs_by_event"
    if query.parent_id is not None:
        return "list_runs_by_parent"
    if query.ordering_key is not None:
        return "list_runs_by_key"
    if query.function is not None:
        return "list_runs_by_function"
    if query.status is not None:
        return "list_runs_by_status"
    return "list_runs_by_newest"
