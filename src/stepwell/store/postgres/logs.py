"""PostgreSQL: the observability verbs (run logs, trace context, telemetry reads), mixed into PostgresStore.

Kept apart from the lifecycle modules on purpose: these verbs serve the observe package, never
the engine's decisions, and their tables (migration 0005) are read and written only here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from psycopg.rows import tuple_row

from stepwell.store.base import FunctionActivity, FunctionQueue, RunLogLine, RunLogs, RunTelemetry, TraceContext
from stepwell.store.postgres.statements import Connection, Cursor
from stepwell.store.sqlfile import load_queries
from stepwell.store.telemetryrows import activity

L = load_queries("stepwell.store.postgres", "logs.sql")


def _run(conn: Connection, name: str, params: dict[str, Any]) -> Cursor:
    return conn.cursor(row_factory=tuple_row).execute(L[name], params)


class ObservabilityVerbs:
    """Needs the host store's `_connection` and `_at` (PostgresStore has them)."""

    def _connection(
        self, operation: str, caller: object | None = None
    ) -> contextlib.AbstractContextManager[Connection]:
        raise NotImplementedError

    def _at(self, now: datetime | None) -> datetime | None:
        raise NotImplementedError

    def append_run_logs(self, lines: Sequence[RunLogLine], *, max_lines: int = 1000) -> int:
        if not lines:
            return 0
        params = {
            "run_ids": [line.run_id for line in lines], "segments": [line.segment for line in lines],
            "attempts": [line.attempt for line in lines], "seqs": [line.seq for line in lines],
            "ats": [line.at for line in lines], "levels": [line.level for line in lines],
            "steps": [line.step for line in lines], "messages": [line.message for line in lines],
        }  # fmt: skip
        with self._connection("append_run_logs") as conn, conn.transaction():
            new = _run(conn, "append_run_logs", params).rowcount
            run_ids = list(dict.fromkeys(line.run_id for line in lines))
            _run(conn, "append_run_logs_trim", {"run_ids": run_ids, "max_lines": max_lines})
        return max(new, 0)

    def list_run_logs(self, run_id: str, *, limit: int = 1000) -> RunLogs:
        with self._connection("list_run_logs") as conn:
            rows = _run(conn, "list_run_logs", {"run_id": run_id, "limit": limit}).fetchall()
            if not rows:
                dropped_row = _run(conn, "list_run_logs_dropped", {"run_id": run_id}).fetchone()
                (dropped,) = dropped_row or (0,)
                return RunLogs((), dropped)
        lines = tuple(
            RunLogLine(run_id, segment, attempt, seq, at, level, message, step)
            for segment, attempt, seq, at, level, step, message, _ in reversed(rows)
        )
        *_, dropped = rows[0]  # every row carries the run's count of dropped lines
        return RunLogs(lines, dropped or 0)

    def resolve_run_prefix(self, prefix: str, *, limit: int = 2) -> list[str]:
        if not prefix:
            return []
        with self._connection("resolve_run_prefix") as conn:
            rows = _run(conn, "resolve_run_prefix", {"prefix": prefix, "limit": limit}).fetchall()
        return [run_id for (run_id,) in rows if run_id.startswith(prefix)]

    def set_trace_context(
        self, context: TraceContext, *, event_ids: Sequence[str] = (), run_ids: Sequence[str] = ()
    ) -> None:
        params = {
            "traceparent": context.traceparent, "tracestate": context.tracestate or None, "link": context.link,
            "event_ids": list(event_ids), "run_ids": list(run_ids),
        }  # fmt: skip
        with self._connection("set_trace_context") as conn:
            _run(conn, "set_trace_context", params)

    def run_telemetry(self, run_ids: Sequence[str]) -> list[RunTelemetry]:
        if not run_ids:
            return []
        with self._connection("run_telemetry") as conn:
            rows = _run(conn, "run_telemetry", {"ids": list(run_ids)}).fetchall()
        return [
            RunTelemetry(run_id, ready, None if parent is None else TraceContext(parent, state or "", bool(link)))
            for run_id, ready, parent, state, link in rows
        ]

    def queue_gauges(self, *, now: datetime | None = None, scan_limit: int = 10_000) -> list[FunctionQueue]:
        with self._connection("queue_gauges") as conn:
            rows = _run(conn, "queue_gauges", {"now": self._at(now), "scan": scan_limit}).fetchall()
        capped = sum(ready for _, ready, _ in rows) >= scan_limit
        return [FunctionQueue(fn, ready, oldest, capped) for fn, ready, oldest in rows]

    def function_activity(self, *, since: datetime, now: datetime | None = None) -> list[FunctionActivity]:
        with self._connection("function_activity") as conn:
            finished = _run(conn, "function_activity_finished", {"since": since}).fetchall()
            dead = _run(conn, "function_activity_dead_letters", {}).fetchall()
        return activity(finished, dead)
