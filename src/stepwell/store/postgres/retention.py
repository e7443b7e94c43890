"""The PostgreSQL store's retention verb (purge), as a mixin of PostgresStore."""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import TYPE_CHECKING

from stepwell.store.base import PurgeCounts, Retention
from stepwell.store.postgres.statements import Connection, run


class RetentionVerbs:
    """purge (see Store)."""

    if TYPE_CHECKING:

        def _connection(
            self, operation: str, caller: object | None = None
        ) -> contextlib.AbstractContextManager[Connection]: ...
        def _at(self, now: datetime | None) -> datetime | None: ...

    def purge(self, retention: Retention, *, now: datetime | None = None) -> PurgeCounts:
        """Batches of `retention.batch`, each its own short transaction (long ones hold back vacuum)."""
        params = {
            "now": self._at(now),
            "completed": retention.completed,
            "dead_letters": retention.dead_letters,
            "batch": retention.batch,
        }
        runs = events = 0
        with self._connection("purge") as conn:
            while (deleted := len(run(conn, "purge_runs", params).fetchall())) > 0:
                runs += deleted
                if deleted < retention.batch:
                    break
            while (deleted := run(conn, "purge_events", params).rowcount) > 0:
                events += deleted
                if deleted < retention.batch:
                    break
        return PurgeCounts(runs=runs, events=events)
