"""The PostgreSQL transaction of a cron tick: claim it once, then store its event and run.

`PostgresStore.fire_cron_tick` hands in a pooled connection and its own `append_events_in`, which
writes the tick's event and run inside this transaction (the transactional-enqueue path), exactly as it
stores any event: same statement, same NOTIFY (delivered at commit).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from psycopg.rows import tuple_row

from stepwell.store.base import AcceptedEvent, CronTick, NewEvent
from stepwell.store.postgres.statements import Connection
from stepwell.store.sqlfile import load_queries

C = load_queries("stepwell.store.postgres", "cron.sql")

# TransactionalEnqueue.append_events_in: (the open transaction's connection, events, now=) -> accepted.
AppendEvents = Callable[..., list[AcceptedEvent]]


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
    _run(conn, "register_cron_schedule", params)
    if _run(conn, "advance_cron_schedule", params) != 1:
        return False
    claimed = _run(conn, "claim_cron_tick", {**params, "event_id": tick.event.id}) == 1
    _run(conn, "forget_cron_ticks", {"function": tick.function, "forget_before": tick.forget_before})
    return claimed


def _run(conn: Connection, name: str, params: dict[str, Any]) -> int:
    """Execute a named statement of cron.sql; returns the number of rows it changed."""
    return conn.cursor(row_factory=tuple_row).execute(C[name], params).rowcount
