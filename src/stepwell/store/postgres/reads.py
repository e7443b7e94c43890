"""The PostgreSQL store's read verbs (runs, inputs, events, dead letters, queue stats), as a mixin of
PostgresStore. Reads run on a pooled connection in autocommit: one snapshot per statement."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from stepwell.model.records import DeadLetter, Disposition, EventRecord, FailureReason, Run
from stepwell.store.base import QueueStats, RunFilter
from stepwell.store.postgres import flow
from stepwell.store.postgres import params as p
from stepwell.store.postgres.statements import Connection, one, run, same
from stepwell.store.rows import error_or_none, error_required, json_or_none, step_from_row


class ReadVerbs:
    """get_run, list_runs, get_run_input, get_event, list_dead_letters, queue_stats (see Store)."""

    if TYPE_CHECKING:

        def _connection(
            self, operation: str, caller: object | None = None
        ) -> contextlib.AbstractContextManager[Connection]: ...
        def _at(self, now: datetime | None) -> datetime | None: ...

    def get_run(self, run_id: str) -> Run | None:
        with self._connection("get_run") as conn, conn.pipeline():
            run_cursor = run(conn, "get_run", {"id": run_id})
            steps_cursor = run(conn, "get_run_steps", {"run_id": run_id})
            errors_cursor = run(conn, "get_run_errors", {"run_id": run_id})
            explain_cursor = run(conn, "get_run_explain", {"run_id": run_id, "now": self._at(None)})
            row, step_rows, error_rows = run_cursor.fetchone(), steps_cursor.fetchall(), errors_cursor.fetchall()
            explained = explain_cursor.fetchone()
        if row is None or explained is None:
            return None
        reason = flow.explain(explained)
        steps = tuple(step_from_row(r, same) for r in step_rows)
        errors = tuple(e for (data,) in error_rows if (e := error_or_none(data)))
        return replace(p.run_from_row(row, steps, errors), waiting_reason=reason)

    def list_runs(self, query: RunFilter) -> list[Run]:
        params = {
            "event_id": query.event_id,
            "function": query.function,
            "status": query.status.value if query.status else None,
            "parent_id": query.parent_id,
            "limit": query.limit,
            "ordering_key": query.ordering_key,
            "created_after": query.created_after,
            "created_before": query.created_before,
            "page_at": query.page_after[0] if query.page_after else None,
            "page_id": query.page_after[1] if query.page_after else None,
        }
        with self._connection("list_runs") as conn:
            return [p.run_from_row(row) for row in run(conn, "list_runs", params).fetchall()]

    def get_run_input(self, run_id: str) -> tuple[str, bytes] | None:
        with self._connection("get_run_input") as conn:
            row = run(conn, "get_run_input", {"id": run_id}).fetchone()
        if row is None:
            return None
        name, data = row
        return None if data is None else (name, bytes(data))  # None: neither an event nor an input of its own

    def get_event(self, event_id: str) -> EventRecord | None:
        with self._connection("get_event") as conn:
            row = run(conn, "get_event", {"id": event_id}).fetchone()
        if row is None:
            return None
        event_id_, name, data, ts, received_at, disposition, run_ids, functions, reasons, skip_runs = row
        skipped = tuple(zip(functions, reasons, skip_runs, strict=True))
        return EventRecord(
            event_id_, name, json_or_none(data), ts, received_at, Disposition(disposition), tuple(run_ids), skipped
        )

    def list_dead_letters(self, *, function: str | None = None, limit: int = 100) -> list[DeadLetter]:
        with self._connection("list_dead_letters") as conn:
            rows = run(conn, "list_dead_letters", {"function": function, "limit": limit}).fetchall()
        return [
            DeadLetter(
                run_id, fn, error_required(error), FailureReason(reason), failed_at, attempts, count, key, policy
            )
            for run_id, fn, error, reason, failed_at, attempts, count, key, policy in rows
        ]

    def queue_stats(self, *, now: datetime | None = None) -> QueueStats:
        with self._connection("queue_stats") as conn:
            ready, scheduled, running, dead, next_due = one(conn, "queue_stats", {"now": self._at(now)})
        return QueueStats(ready, scheduled, running, dead, next_due)
