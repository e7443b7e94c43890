"""The PostgreSQL store's insight verbs (a mixin of PostgresStore): payload search, duration
percentiles, the fan-out list. Each is one bounded read: a scan limit, a time window, a count limit."""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
from psycopg.rows import tuple_row

from stepwell.model.payload import PayloadFilter
from stepwell.model.records import Run
from stepwell.store.base import FanOutSummary, FunctionDurations, RunDurations, RunFilter, RunSearch
from stepwell.store.postgres.params import run_from_row
from stepwell.store.postgres.statements import Connection
from stepwell.store.sqlfile import load_queries

I = load_queries("stepwell.store.postgres", "insight.sql")


class InsightVerbs:
    """search_runs, function_durations, list_fan_outs (see Store)."""

    if TYPE_CHECKING:

        def _connection(
            self, operation: str, caller: object | None = None
        ) -> contextlib.AbstractContextManager[Connection]: ...

    def search_runs(self, query: RunFilter, payload: PayloadFilter, *, scan_limit: int = 10_000) -> RunSearch:
        params: dict[str, Any] = {
            "event_id": query.event_id, "function": query.function,
            "status": query.status.value if query.status else None, "parent_id": query.parent_id,
            "ordering_key": query.ordering_key, "limit": query.limit, "scan_limit": scan_limit,
            "created_after": query.created_after, "created_before": query.created_before,
            "page_at": query.page_after[0] if query.page_after else None,
            "page_id": query.page_after[1] if query.page_after else None,
            "path": payload.key_path, "value": orjson.dumps(payload.value).decode(),
        }  # fmt: skip
        with self._connection("search_runs") as conn:
            rows = conn.cursor(row_factory=tuple_row).execute(I["search_runs"], params).fetchall()
        if not rows:
            return RunSearch([], None, 0)
        found = [_search_row(row) for row in rows]
        runs = [run for _, _, _, run in found if run is not None]
        edge_at, edge_id, scanned, _ = found[0]
        if len(runs) == query.limit:
            return RunSearch(runs, (runs[-1].created_at, runs[-1].id), scanned)
        return RunSearch(runs, (edge_at, str(edge_id)) if scanned == scan_limit else None, scanned)

    def function_durations(self, *, since: datetime, now: datetime, limit: int = 10_000) -> RunDurations:
        with self._connection("function_durations") as conn:
            cursor = conn.cursor(row_factory=tuple_row)
            rows = cursor.execute(I["function_durations"], {"since": since, "now": now, "limit": limit}).fetchall()
        functions = [
            FunctionDurations(function, completed, failed, float(p50), float(p95))
            for function, completed, failed, p50, p95, _, _ in rows
        ]
        if not rows:
            return RunDurations(functions, None)
        *_, scanned, oldest = rows[0]  # every row carries the scan's size and its oldest run
        return RunDurations(functions, oldest if scanned >= limit else None)

    def list_fan_outs(
        self, *, limit: int = 50, before: tuple[datetime, str, str] | None = None, count_limit: int = 1000
    ) -> list[FanOutSummary]:
        params = {
            "limit": limit, "count_limit": count_limit, "before_at": before[0] if before else None,
            "before_parent": before[1] if before else None, "before_step": before[2] if before else None,
        }  # fmt: skip
        with self._connection("list_fan_outs") as conn:
            rows = conn.cursor(row_factory=tuple_row).execute(I["list_fan_outs"], params).fetchall()
        return [
            FanOutSummary(parent, step, function, created, total, tolerate, bool(done), unfinished, failed,
                          max(unfinished, failed) >= count_limit)
            for parent, step, function, created, total, tolerate, done, unfinished, failed in rows
        ]  # fmt: skip


def _search_row(row: tuple[Any, ...]) -> tuple[Any, str, int, Run | None]:
    """A search_runs row: the scan's edge (created_at, id) and how many rows it scanned, then a matching
    run's columns (NULL when the scan found none)."""
    edge_at, edge_id, scanned, run_id, *columns = row
    return edge_at, str(edge_id), scanned, None if run_id is None else run_from_row((run_id, *columns))
