"""Reading runs, events and dead letters back as model records (on a reader connection)."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from typing import Any

from stepwell.model.records import DeadLetter, Disposition, ErrorInfo, EventRecord, FailureReason, Run, RunStatus, Step
from stepwell.store.base import QueueStats, RunFilter
from stepwell.store.rows import error_or_none, error_required, json_or_none, step_from_row
from stepwell.store.sqlite import flow
from stepwell.store.sqlite.browse import B, statement_for
from stepwell.store.sqlite.times import FOREVER, moment, moment_or_none, stamp
from stepwell.store.sqlite.waiting import Q


def get_run(conn: sqlite3.Connection, run_id: str, now: int) -> Run | None:
    row = conn.execute(Q["get_run"], {"id": run_id}).fetchone()
    if row is None:
        return None
    steps = tuple(step_from_row(r, moment_or_none) for r in conn.execute(Q["steps_of_run"], {"run_id": run_id}))
    errors = tuple(e for (data,) in conn.execute(Q["run_errors"], {"run_id": run_id}) if (e := error_or_none(data)))
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
    row = conn.execute(Q["run_input"], {"id": run_id}).fetchone()
    return None if row is None else (row[0], row[1])


def get_event(conn: sqlite3.Connection, event_id: str) -> EventRecord | None:
    row = conn.execute(Q["get_event"], {"id": event_id}).fetchone()
    if row is None:
        return None
    run_ids = tuple(r[0] for r in conn.execute(Q["runs_of_event"], {"event_id": event_id}))
    skipped = tuple((fn, reason, run) for fn, reason, run in conn.execute(Q["skips_of_event"], {"event_id": event_id}))
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
