"""The SQLite store's retention verb (purge), as a mixin of SQLiteStore."""

from __future__ import annotations

import contextlib
import sqlite3
from datetime import datetime
from typing import TYPE_CHECKING

from stepwell.store.base import (
    PurgeCounts,
    Retention,
)
from stepwell.store.sqlite.times import micros
from stepwell.store.sqlite.waiting import Q


class RetentionVerbs:
    """purge (see Store)."""

    if TYPE_CHECKING:

        def _write(self, operation: str) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...
        def _read(self, operation: str) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...
        def _now(self, now: datetime | None) -> int: ...

    def purge(self, retention: Retention, *, now: datetime | None = None) -> PurgeCounts:
        """Batches of `retention.batch` rows, each its own short transaction."""
        at = self._now(now)
        params = {"completed_before": at - micros(retention.completed),
                  "failed_before": at - micros(retention.dead_letters), "batch": retention.batch}  # fmt: skip
        runs = events = 0
        while True:
            with self._write("purge") as conn:
                ids = [run_id for (run_id,) in conn.execute(Q["purge_runs"], params).fetchall()]
                for run_id in ids:
                    for name in ("purge_steps", "purge_run_errors", "purge_dead_letter"):
                        conn.execute(Q[name], {"run_id": run_id})
            runs += len(ids)
            if len(ids) < retention.batch:
                break
        while True:
            with self._write("purge") as conn:
                deleted = conn.execute(
                    Q["purge_events"], {"before": params["completed_before"], "batch": retention.batch}
                ).rowcount
            events += deleted
            if deleted < retention.batch:
                break
        return PurgeCounts(runs=runs, events=events)

    # the function registry (store/sqlite/registry.py)
