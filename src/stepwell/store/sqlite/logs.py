"""SQLite: the observability verbs (run logs, trace context, telemetry reads), mixed into SQLiteStore.

Kept apart from the lifecycle modules on purpose: these verbs serve the observe package, never
the engine's decisions, and their tables (migration 0005) are read and written only here.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence
from datetime import datetime

import orjson

from stepwell.store.base import FunctionActivity, FunctionQueue, RunLogLine, RunLogs, RunTelemetry, TraceContext
from stepwell.store.sqlfile import load_queries
from stepwell.store.sqlite.times import moment, moment_or_none, stamp
from stepwell.store.telemetryrows import activity

L = load_queries("stepwell.store.sqlite", "logs.sql")


class ObservabilityVerbs:
    """Needs the host store's `_write`, `_read` and `_now` (SQLiteStore has them)."""

    def _write(self, operation: str) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def _read(self, operation: str) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def _now(self, now: datetime | None) -> int:
        raise NotImplementedError

    def append_run_logs(self, lines: Sequence[RunLogLine], *, max_lines: int = 1000) -> int:
        if not lines:
            return 0
        new = 0
        with self._write("append_run_logs") as conn:
            for line in lines:
                new += conn.execute(L["append_run_logs"], _log_params(line)).rowcount
            for run_id in dict.fromkeys(line.run_id for line in lines):
                [count] = conn.execute(L["append_run_logs_count"], {"run_id": run_id}).fetchone()
                if count > max_lines:
                    excess = {"run_id": run_id, "excess": count - max_lines}
                    conn.execute(L["append_run_logs_trim"], excess)
                    conn.execute(L["append_run_logs_count_drops"], excess)
        return new

    def list_run_logs(self, run_id: str, *, limit: int = 1000) -> RunLogs:
        with self._read("list_run_logs") as conn:
            rows = conn.execute(L["list_run_logs"], {"run_id": run_id, "limit": limit}).fetchall()
            dropped = conn.execute(L["list_run_logs_dropped"], {"run_id": run_id}).fetchone()
        lines = tuple(
            RunLogLine(run_id, segment, attempt, seq, moment(at), level, message, step)
            for segment, attempt, seq, at, level, step, message in reversed(rows)
        )
        return RunLogs(lines, dropped[0] if dropped else 0)

    def resolve_run_prefix(self, prefix: str, *, limit: int = 2) -> list[str]:
        if not prefix:
            return []
        with self._read("resolve_run_prefix") as conn:
            rows = conn.execute(L["resolve_run_prefix"], {"prefix": prefix, "limit": limit}).fetchall()
        return [run_id for (run_id,) in rows if run_id.startswith(prefix)]

    def set_trace_context(
        self, context: TraceContext, *, event_ids: Sequence[str] = (), run_ids: Sequence[str] = ()
    ) -> None:
        values = {"traceparent": context.traceparent, "tracestate": context.tracestate or None}
        with self._write("set_trace_context") as conn:
            if event_ids:
                conn.execute(L["set_trace_context_events"], {**values, "ids": orjson.dumps(list(event_ids))})
            if run_ids:
                params = {**values, "link": int(context.link), "ids": orjson.dumps(list(run_ids))}
                conn.execute(L["set_trace_context_runs"], params)

    def run_telemetry(self, run_ids: Sequence[str]) -> list[RunTelemetry]:
        if not run_ids:
            return []
        with self._read("run_telemetry") as conn:
            rows = conn.execute(L["run_telemetry"], {"ids": orjson.dumps(list(run_ids))}).fetchall()
        return [RunTelemetry(rid, moment(ready), trace_of(tp, ts, link)) for rid, ready, tp, ts, link in rows]

    def queue_gauges(self, *, now: datetime | None = None, scan_limit: int = 10_000) -> list[FunctionQueue]:
        params = {"now": self._now(now), "scan": scan_limit}
        with self._read("queue_gauges") as conn:
            rows = conn.execute(L["queue_gauges"], params).fetchall()
        capped = sum(ready for _, ready, _ in rows) >= scan_limit
        return [FunctionQueue(fn, ready, moment_or_none(oldest), capped) for fn, ready, oldest in rows]

    def function_activity(self, *, since: datetime, now: datetime | None = None) -> list[FunctionActivity]:
        with self._read("function_activity") as conn:
            finished = conn.execute(L["function_activity_finished"], {"since": stamp(since)}).fetchall()
            dead = conn.execute(L["function_activity_dead_letters"], {}).fetchall()
        return activity(finished, dead)


def trace_of(parent: str | None, state: str | None, link: int) -> TraceContext | None:
    """A stored W3C context (None when there is none); `link`: start a new trace linked to it."""
    return None if parent is None else TraceContext(parent, state or "", bool(link))


def _log_params(line: RunLogLine) -> dict[str, object]:
    return {
        "run_id": line.run_id, "segment": line.segment, "attempt": line.attempt, "seq": line.seq,
        "at": stamp(line.at), "level": line.level, "step": line.step, "message": line.message,
    }  # fmt: skip
