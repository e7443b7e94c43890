"""The PostgreSQL store's dashboard verbs (a mixin of PostgresStore): the audit log, bounded reads of endings."""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import TYPE_CHECKING

from psycopg.rows import tuple_row

from stepwell.model.audit import AuditEntry, NewAuditEntry
from stepwell.model.records import Disposition, EventRecord, RunStatus
from stepwell.store.postgres.statements import Connection
from stepwell.store.sqlfile import load_queries

A = load_queries("stepwell.store.postgres", "audit.sql")
NEWEST = 2**62


class DashboardVerbs:
    """append_audit, list_audit, recent_endings (see Store)."""

    if TYPE_CHECKING:

        def _connection(
            self, operation: str, caller: object | None = None
        ) -> contextlib.AbstractContextManager[Connection]: ...
        def _at(self, now: datetime | None) -> datetime | None: ...

    def append_audit(self, entry: NewAuditEntry, *, now: datetime | None = None) -> None:
        entry = entry.clipped()
        params = {
            "now": self._at(now), "actor_id": entry.actor_id, "actor_name": entry.actor_name,
            "action": entry.action, "target": entry.target, "detail": entry.detail,
        }  # fmt: skip
        with self._connection("append_audit") as conn:
            conn.cursor(row_factory=tuple_row).execute(A["append_audit"], params)

    def list_audit(self, *, limit: int = 100, before: int | None = None) -> list[AuditEntry]:
        with self._connection("list_audit") as conn:
            cursor = conn.cursor(row_factory=tuple_row)
            rows = cursor.execute(A["list_audit"], {"before": before or NEWEST, "limit": limit}).fetchall()
        return [AuditEntry(*row) for row in rows]

    def recent_endings(self, *, status: RunStatus, since: datetime, limit: int) -> list[tuple[str, datetime]]:
        params = {"status": status.value, "since": since, "limit": limit}
        with self._connection("recent_endings") as conn:
            rows = conn.cursor(row_factory=tuple_row).execute(A["recent_endings"], params).fetchall()
        return [(function, ended_at) for function, ended_at in rows]

    def list_recent_events(self, *, limit: int = 50, before: tuple[datetime, str] | None = None) -> list[EventRecord]:
        params = {"before_at": before[0] if before else None, "before_id": before[1] if before else None}
        with self._connection("list_recent_events") as conn:
            rows = conn.cursor(row_factory=tuple_row).execute(A["list_recent_events"], {**params, "limit": limit})
            return [
                EventRecord(event_id, name, None, ts, received, Disposition(disposition))
                for event_id, name, ts, received, disposition in rows.fetchall()
            ]
