"""The SQLite store's insight verbs (a mixin of SQLiteStore): payload search, duration percentiles,
the fan-out list. Each is one bounded read: a scan limit, a time window, a count limit."""

from __future__ import annotations

import contextlib
import sqlite3
from datetime import datetime
from typing import TYPE_CHECKING, Any

from stepwell.model.payload import PayloadFilter
from stepwell.model.records import Run
from stepwell.store.base import FanOutSummary, FunctionDurations, RunDurations, RunFilter, RunSearch
from stepwell.store.sqlfile import load_queries
from stepwell.store.sqlite.reads import run_from_row, statement_for
from stepwell.store.sqlite.times import moment, stamp

I = load_queries("stepwell.store.sqlite", "insight.sql")
SECOND = 1_000_000  # microseconds


class InsightVerbs:
    """search_runs, function_durations, list_fan_outs (see Store)."""

    if TYPE_CHECKING:

        def _read(self, operation: str) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...

    def search_runs(self, query: RunFilter, payload: PayloadFilter, *, scan_limit: int = 10_000) -> RunSearch:
        params: dict[str, Any] = {
            "event_id": query.event_id, "function": query.function,
            "status": query.status.value if query.status else None, "parent_id": query.parent_id,
            "ordering_key": query.ordering_key, "limit": query.limit, "scan_limit": scan_limit,
            "created_after": stamp(query.created_after), "created_before": stamp(query.created_before),
            "page_at": stamp(query.page_after[0]) if query.page_after else None,
            "page_id": query.page_after[1] if query.page_after else None,
            "kind": payload.kind, "path": payload.json_path,
            "value": payload.value if payload.kind in ("text", "number") else None,
        }  # fmt: skip
        name = "search_runs_by_" + statement_for(query).removeprefix("list_runs_by_")
        with self._read("search_runs") as conn:
            rows = conn.execute(I[name], params).fetchall()
        if not rows:
            return RunSearch([], None, 0)
        found = [_search_row(row) for row in rows]
        runs = [run for _, _, _, run in found if run is not None]
        edge_at, edge_id, scanned, _ = found[0]
        if len(runs) == query.limit:
            return RunSearch(runs, (runs[-1].created_at, runs[-1].id), scanned)
        resume = (moment(edge_at), str(edge_id)) if scanned == scan_limit else None
        return RunSearch(runs, resume, scanned)

    def function_durations(self, *, since: datetime, now: datetime, limit: int = 10_000) -> RunDurations:
        params = {"since": stamp(since), "now": stamp(now), "limit": limit}
        with self._read("function_durations") as conn:
            rows = conn.execute(I["function_durations"], params).fetchall()
        functions = [
            FunctionDurations(function, completed, failed, p50 / SECOND, p95 / SECOND)
            for function, completed, failed, p50, p95, _, _ in rows
        ]
        if not rows:
            return RunDurations(functions, None)
        *_, scanned, oldest = rows[0]  # every row carries the scan's size and its oldest run
        return RunDurations(functions, moment(oldest) if scanned >= limit else None)

    def list_fan_outs(
        self, *, limit: int = 50, before: tuple[datetime, str, str] | None = None, count_limit: int = 1000
    ) -> list[FanOutSummary]:
        params = {
            "limit": limit, "count_limit": count_limit, "before_at": stamp(before[0]) if before else None,
            "before_parent": before[1] if before else None, "before_step": before[2] if before else None,
        }  # fmt: skip
        with self._read("list_fan_outs") as conn:
            rows = conn.execute(I["list_fan_outs"], params).fetchall()
        return [
            FanOutSummary(parent, step, function, moment(created), total, tolerate, bool(done), unfinished, failed,
                          max(unfinished, failed) >= count_limit)
            for parent, step, function, created, total, tolerate, done, unfinished, failed in rows
        ]  # fmt: skip


def _search_row(row: tuple[Any, ...]) -> tuple[Any, str, int, Run | None]:
    """A search_runs row: the scan's edge (created_at, id) and how many rows it scanned, then a matching
    run's columns (NULL when the scan found none)."""
    edge_at, edge_id, scanned, run_id, *columns = row
    return edge_at, str(edge_id), scanned, None if run_id is None else run_from_row((run_id, *columns))
