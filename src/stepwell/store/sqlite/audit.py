"""The SQLite store's dashboard verbs (a mixin of SQLiteStore): the audit log, bounded reads of endings."""

from __future__ import annotations

import contextlib
import sqlite3
from datetime import datetime
from typing import TYPE_CHECKING

from stepwell.model.audit import AuditEntry, NewAuditEntry
from stepwell.model.records import Disposition, EventRecord, RunStatus
from stepwell.store.sqlfile import load_queries
from stepwell.store.sqlite.times import moment, stamp

A = load_queries("stepwell.store.sqlite", "audit.sql")
NEWEST = 2**62


class DashboardVerbs:
    """append_audit, list_audit, recent_endings (see Store)."""

    if TYPE_CHECKING:

        def _write(self, operation: str) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...
        def _read(self, operation: str) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...
        def _now(self, now: datetime | None) -> int: ...

    def append_audit(self, entry: NewAuditEntry, *, now: datetime | None = None) -> None:
        entry = entry.clipped()
        params = {
            "now": self._now(now), "actor_id": entry.actor_id, "actor_name": entry.actor_name,
            "action": entry.action, "target": entry.target, "detail": entry.detail,
        }  # fmt: skip
        with self._write("append_audit") as conn:
            conn.execute(A["append_audit"], params)

    def list_audit(self, *, limit: int = 100, before: int | None = None) -> list[AuditEntry]:
        with self._read("list_audit") as conn:
            rows = conn.execute(A["list_audit"], {"before": before or NEWEST, "limit": limit}).fetchall()
        return [AuditEntry(entry_id, moment(at), *rest) for entry_id, at, *rest in rows]

    def recent_endings(self, *, status: RunStatus, since: datetime, limit: int) -> list[tuple[str, datetime]]:
        params = {"status": status.value, "since": stamp(since), "limit": limit}
        with self._read("recent_endings") as conn:
            return [(function, moment(ended_at)) for function, ended_at in conn.execute(A["recent_endings"], params)]

    def list_recent_events(self, *, limit: int = 50, before: tuple[datetime, str] | None = None) -> list[EventRecord]:
        params = {"before_at": stamp(before[0]) if before else None, "before_id": before[1] if before else None}
        with self._read("list_recent_events") as conn:
            rows = conn.execute(A["list_recent_events"], {**params, "limit": limit}).fetchall()
        return [
            EventRecord(event_id, name, None, moment(ts), moment(received), Disposition(disposition))
            for event_id, name, ts, received, disposition in rows
        ]
