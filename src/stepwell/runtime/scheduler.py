"""Cron: start each cron function's latest due tick, exactly once however many schedulers run.

Every worker runs a scheduler in its maintenance pass (and `stepwell.testing.TestEnv` in its
drain). One pass asks, per cron trigger, for the latest tick at or before now and hands it to
`Store.fire_cron_tick`, whose unique rows decide who fires it. The catch-up policy follows:

* after downtime, only the most recent missed tick runs, once; older missed ticks are skipped
  (Kubernetes CronJob's behaviour; Oban skips even that one);
* a newly deployed schedule (or a changed one) starts from the moment a scheduler first sees it:
  it never fires ticks from before that;
* ticks only move forward: a scheduler whose clock lags behind cannot fire an older tick.

The cron triggers come from a `CronSource`: a worker and a server read them from the store's
function registry (runtime/routing.py: every app's, so ticks fire wherever maintenance runs, with
or without the user's code); `stepwell.testing` reads its own app's.

Time is the store's (`store.now()`: the database clock on PostgreSQL), never the host's.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Protocol

import orjson

from stepwell.model.matching import event_document
from stepwell.model.schedule import CRON_EVENT, Cron, cron_event_id, iso_utc
from stepwell.runtime.dispatch import Routable, new_run
from stepwell.store.base import CronTick, NewEvent, Store

log = logging.getLogger("stepwell.scheduler")

TICK_MEMORY = timedelta(days=7)  # how long a fired tick's row is kept (its event and run follow retention)
LATE = timedelta(minutes=1)  # a tick fired later than this after its time is logged as a catch-up


class CronSource(Protocol):
    """Where the cron triggers come from: the registry (Router) or an app's own functions (Registry)."""

    @property
    def crons(self) -> Sequence[tuple[Routable, Cron]]: ...


class Scheduler:
    def __init__(self, registry: CronSource, store: Store) -> None:
        self.registry, self.store = registry, store
        self._next: dict[tuple[str, str], datetime] = {}  # per (function, schedule): nothing to do before this
        self.last_now: datetime | None = None

    def tick(self, now: datetime | None = None) -> int:
        """One pass over every cron trigger whose next tick has come; returns how many runs it started."""
        crons = list(self.registry.crons)
        if not crons:
            return 0
        now = now or self.store.now()
        self.last_now = now
        fired = 0
        for spec, cron in crons:
            key = (spec.name, cron.schedule)
            due = self._next.get(key)
            if due is not None and now < due:
                continue
            latest = cron.latest_at(now)
            if latest is not None and self.store.fire_cron_tick(self._tick(spec, cron, latest, now), now=now):
                fired += 1
                self._log_fired(spec.name, cron, latest, now)
            upcoming = cron.next_after(now)
            if upcoming is None:
                self._next.pop(key, None)
            else:
                self._next[key] = upcoming
        return fired

    def next_due(self, now: datetime | None = None) -> datetime | None:
        """The earliest tick of any cron trigger after `now` (for sleeping until it, and for time skipping)."""
        crons = list(self.registry.crons)
        if not crons:
            return None
        now = now or self.store.now()
        upcoming = [t for _, cron in crons if (t := cron.next_after(now)) is not None]
        return min(upcoming, default=None)

    def seconds_until_due(self) -> float | None:
        """From the last pass's now to the earliest next tick it saw; None when there is no cron trigger."""
        if self.last_now is None or not self._next:
            return None
        return max(0.0, (min(self._next.values()) - self.last_now).total_seconds())

    @staticmethod
    def _tick(spec: Routable, cron: Cron, tick_at: datetime, now: datetime) -> CronTick:
        event_id = cron_event_id(spec.name, tick_at)
        data = {"cron": cron.expression, "tz": cron.tz, "scheduled_at": iso_utc(tick_at)}
        document = event_document(event_id, CRON_EVENT, data, tick_at)
        run = new_run(spec, now, document=document)
        event = NewEvent(id=event_id, name=CRON_EVENT, data=orjson.dumps(data), ts=tick_at, runs=(run,))
        return CronTick(spec.name, cron.schedule, tick_at, event, forget_before=tick_at - TICK_MEMORY)

    @staticmethod
    def _log_fired(function: str, cron: Cron, tick_at: datetime, now: datetime) -> None:
        if now - tick_at > LATE:
            log.warning(
                "cron %s (%s): started the missed tick of %s, %s late; earlier missed ticks, if any, are skipped",
                function,
                cron.schedule,
                iso_utc(tick_at),
                now - tick_at,
            )
        else:
            log.info("cron %s (%s): started the tick of %s", function, cron.schedule, iso_utc(tick_at))
