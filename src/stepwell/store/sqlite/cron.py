"""The SQLite store's cron verb (fire_cron_tick): claim a tick once, then store its event and run.

`CronVerbs.fire_cron_tick` opens the write transaction and hands in the way `append_events` admits
an event's runs (flow control included, admission.py), so that a tick's event is stored exactly
as any event.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from stepwell.model.records import Disposition
from stepwell.store.base import CronTick, NewRun
from stepwell.store.sqlfile import load_queries
from stepwell.store.sqlite import admission
from stepwell.store.sqlite.times import EPOCH, micros

C = load_queries("stepwell.store.sqlite", "cron.sql")
Q = load_queries("stepwell.store.sqlite")

# (conn, runs, at, *, event_id) -> (ids of the runs the event owns, the first reason a run was skipped)
AdmitRuns = Callable[..., tuple[tuple[str, ...], str | None]]


class CronVerbs:
    """fire_cron_tick (see Store)."""

    if TYPE_CHECKING:

        def _write(self, operation: str) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...
        def _read(self, operation: str) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...
        def _now(self, now: datetime | None) -> int: ...

    def fire_cron_tick(self, tick: CronTick, *, now: datetime | None = None) -> bool:
        at = self._now(now)
        with self._write("fire_cron_tick") as conn:
            return fire_tick(conn, tick, at, admit_runs=admission.admit_event_runs)


def fire_tick(conn: sqlite3.Connection, tick: CronTick, at: int, *, admit_runs: AdmitRuns) -> bool:
    """See Store.fire_cron_tick. `at` is the store's now in microseconds."""
    params = {"function": tick.function, "schedule": tick.schedule, "tick_at": stamp_of(tick.tick_at), "now": at}
    conn.execute(C["fire_cron_tick_register"], params)
    if conn.execute(C["fire_cron_tick_advance"], params).rowcount != 1:
        return False
    claimed = conn.execute(C["fire_cron_tick_claim"], {**params, "event_id": tick.event.id}).rowcount == 1
    conn.execute(C["fire_cron_tick_forget"], {"function": tick.function, "forget_before": stamp_of(tick.forget_before)})
    return claimed and _store_event(conn, tick, at, admit_runs)


def _store_event(conn: sqlite3.Connection, tick: CronTick, at: int, admit_runs: AdmitRuns) -> bool:
    event = tick.event
    stored = conn.execute(
        Q["fire_cron_tick_event"],
        {
            "id": event.id,
            "name": event.name,
            "data": event.data,
            "ts": stamp_of(event.ts or tick.tick_at),
            "now": at,
            "disposition": Disposition.STARTED.value,
        },
    )
    if stored.rowcount != 1:
        return False  # the tick's event exists already: its run was started then
    runs: Sequence[NewRun] = event.runs
    started, skipped = admit_runs(conn, runs, at, event_id=event.id)
    if not started and skipped:
        conn.execute(Q["append_events_disposition"], {"id": event.id, "disposition": skipped})
    return True


def stamp_of(when: datetime) -> int:
    return micros(when - EPOCH)
