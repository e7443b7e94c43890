"""The SQLite store's ingest verbs (append_events, create_runs), as a mixin of SQLiteStore: events and
the runs they start, in one write transaction (admission.py admits the runs with flow control).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import orjson

from stepwell.model.records import (
    Disposition,
)
from stepwell.store.base import (
    AcceptedEvent,
    ConditionCheck,
    NewEvent,
    NewRun,
)
from stepwell.store.sqlite import admission, lifecycle, registry, waiting
from stepwell.store.sqlite.times import stamp
from stepwell.store.sqlite.waiting import Q


class IngestVerbs:
    """append_events, create_runs (see Store)."""

    if TYPE_CHECKING:

        def _write(self, operation: str) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...
        def _read(self, operation: str) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...
        def _now(self, now: datetime | None) -> int: ...

    def append_events(
        self,
        events: Sequence[NewEvent],
        *,
        now: datetime | None = None,
        conditions: ConditionCheck | None = None,
        registry_generation: int | None = None,
    ) -> list[AcceptedEvent]:
        at = self._now(now)
        accepted: list[AcceptedEvent] = []
        stored: list[bool] = []
        with self._write("append_events") as conn:
            registry.check_generation(conn, registry_generation)
            ids = orjson.dumps([e.id for e in events])
            known = {event_id for (event_id,) in conn.execute(Q["append_events_known"], {"ids": ids})}
            for event in events:
                stored.append(event.id not in known)
                known.add(event.id)  # a repeat within the batch is a duplicate too
            fresh = [event for event, is_new in zip(events, stored, strict=True) if is_new]
            with_runs, no_match = Disposition.STARTED.value, Disposition.NO_MATCH.value
            conn.executemany(Q["append_events"], [  # numbered parameters, in the block's order
                (e.id, e.name, e.data, stamp(e.ts) if e.ts else at, at, with_runs if e.runs else no_match,
                 None if e.trace is None else e.trace.traceparent,
                 None if e.trace is None else e.trace.tracestate or None)
                for e in fresh
            ])  # fmt: skip
            # waits and cancel_on first: an event must not cancel the runs it starts itself
            resumed = waiting.resume_waits(conn, events, stored, conditions, at, cancel=lifecycle.cancel)
            admission.insert_event_runs(conn, fresh, at)
            owned = admission.admit_event_flow_runs(conn, fresh, at)
            for event, is_new in zip(events, stored, strict=True):
                if not is_new:
                    existing = conn.execute(Q["get_event_runs"], {"event_id": event.id}).fetchall()
                    accepted.append(AcceptedEvent(event.id, True, tuple(run_id for (run_id,) in existing)))
                    continue
                started, skipped = owned[event.id]
                accepted.append(AcceptedEvent(event.id, False, started))
                if not started and skipped:
                    conn.execute(Q["append_events_disposition"], {"id": event.id, "disposition": skipped})
            for event_id, disposition in resumed.items():
                if not next(a for a in accepted if a.id == event_id).run_ids:
                    conn.execute(Q["append_events_disposition"], {"id": event_id, "disposition": disposition.value})
        return accepted

    def create_runs(self, runs: Sequence[NewRun], *, now: datetime | None = None) -> list[str | None]:
        at = self._now(now)
        with self._write("create_runs") as conn:
            return [owner for owner, _ in admission.admit_runs(conn, runs, at, event_id=None)]
