"""The PostgreSQL store's cron verb (fire_cron_tick): claim a tick once, then store its event and run.

`CronVerbs.fire_cron_tick` hands in a pooled connection and the store's own `append_events_in`, which
writes the tick's event and run inside this transaction (the transactional-enqueue path), exactly as it
stores any event: same statement, same NOTIFY (delivered at commit).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from psycopg.rows import tuple_row

from stepwell.store.base import AcceptedEvent, CronTick, NewEvent
from stepwell.store.postgres.statements import Connection
from stepwell.store.sqlfile import load_queries

C = load_queries("stepwell.store.postgres", "cron.sql")

# TransactionalEnqueue.append_events_in: (the open transaction's connection, events, now=) -> accepted.
AppendEvents = Callable[..., list[AcceptedEvent]]


class CronVerbs:
    """fire_cron_tick (see Store)."""

    if TYPE_CHECKING:

        def _connection(
            self, operation: str, caller: object | None = None
        ) -> contextlib.AbstractContextManager[Connection]: ...
        def _at(self, now: datetime | None) -> datetime | None: ...
        def append_events_in(
            self, connection: object, events: Sequence[NewEvent], *, now: datetime | None = None
        ) -> list[AcceptedEvent]: ...

    def fire_cron_tick(self, tick: CronTick, *, now: datetime | None = None) -> bool:
        with self._connection("fire_cron_tick") as conn:
            return fire_tick(conn, tick, self._at(now), append_events=self.append_events_in)


def fire_tick(conn: Connection, tick: CronTick, at: datetime | None, *, append_events: AppendEvents) -> bool:
    """See Store.fire_cron_tick. `at` None means the database's now()."""
    with conn.transaction():
        if not _claim(conn, tick, at):
            return False
        events: Sequence[NewEvent] = [tick.event]
        [accepted] = append_events(conn, events, now=at)
        return not accepted.duplicate


def _claim(conn: Connection, tick: CronTick, at: datetime | None) -> bool:
    params = {"function": tick.function, "schedule": tick.schedule, "tick_at": tick.tick_at, "now": at}
    _run(conn, "fire_cron_tick_register", params)
    if _run(conn, "fire_cron_tick_advance", params) != 1:
        return False
    claimed = _run(conn, "fire_cron_tick_claim", {**params, "event_id": tick.event.id}) == 1
    _run(conn, "fire_cron_tick_forget", {"function": tick.function, "forget_before": tick.forget_before})
    return claimed


def _run(conn: Connection, name: str, params: dict[str, Any]) -> int:
    """Execute a named statement of cron.sql; returns the number of rows it changed."""
    return conn.cursor(row_factory=tuple_row).execute(C[name], params).rowcount
