"""The PostgreSQL store's ingest verbs (append_events, create_runs), as a mixin of PostgresStore.

Also their TransactionalEnqueue forms (append_events_in, create_runs_in): the same verbs on the
caller's connection, inside the caller's open transaction (outbox.py), never committed here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from stepwell.store.base import AcceptedEvent, ConditionCheck, NewEvent, NewRun
from stepwell.store.postgres import admission, lifecycle, registry, waiting
from stepwell.store.postgres import params as p
from stepwell.store.postgres.statements import Connection, one, run


class IngestVerbs:
    """append_events, create_runs (see Store); append_events_in, create_runs_in (see TransactionalEnqueue)."""

    if TYPE_CHECKING:

        def _connection(
            self, operation: str, caller: object | None = None
        ) -> contextlib.AbstractContextManager[Connection]: ...
        def _at(self, now: datetime | None) -> datetime | None: ...

    def append_events(
        self,
        events: Sequence[NewEvent],
        *,
        now: datetime | None = None,
        conditions: ConditionCheck | None = None,
        registry_generation: int | None = None,
    ) -> list[AcceptedEvent]:
        return self._append_events(events, now, conditions, None, registry_generation)

    def append_events_in(
        self,
        connection: object,
        events: Sequence[NewEvent],
        *,
        now: datetime | None = None,
        conditions: ConditionCheck | None = None,
        registry_generation: int | None = None,
    ) -> list[AcceptedEvent]:
        """append_events inside the caller's open transaction (TransactionalEnqueue; never committed here)."""
        return self._append_events(events, now, conditions, connection, registry_generation)

    def _append_events(
        self,
        events: Sequence[NewEvent],
        now: datetime | None,
        conditions: ConditionCheck | None,
        connection: object | None,
        registry_generation: int | None,
    ) -> list[AcceptedEvent]:
        """One statement when no wait listens for these event names and no run has flow control; else a
        transaction that also resumes waits, cancels runs (cancel_on) and admits runs (admission.py).
        With `registry_generation`, the registry generation is checked in the same statement or transaction
        (registry.py)."""
        at = self._at(now)
        firsts: dict[str, NewEvent] = {}
        for event in events:
            firsts.setdefault(event.id, event)  # a repeat within the batch is a duplicate of the first
        batch = list(firsts.values())
        flowed = any(run.flow is not None for event in batch for run in event.runs)
        started: dict[str, tuple[str, ...]] = {}
        fan_outs: list[tuple[str, str]] = []
        with self._connection("append_events", connection) as conn, registry.refusals():
            gate = registry.precheck(conn, connection, registry_generation)
            inserted: list[str] = []
            names: list[str] = []
            if not flowed:
                params = p.event_params(batch, at, if_no_waits=True, generation=gate)
                inserted, names, _, _ = one(conn, "append_events", params)
            if flowed or names:
                with self._pipeline(conn, connection), self._atomic(conn, connection):
                    registry.check(conn, gate)
                    inserted, started, fan_outs = admission.store_events(conn, batch, at, conditions, lifecycle.cancel)
                waiting.finish_fan_outs(conn, fan_outs, at)  # after the commit that cancelled their children
            stored = set(inserted)  # once, not per event: a batch of n is O(n)
            known = [event.id for event in batch if event.id not in stored]
            existing: dict[str, list[str]] = {}
            if known:
                existing = dict(run(conn, "append_events_known_runs", {"event_ids": known}).fetchall())
        return _accepted(events, firsts, stored, started, existing)

    @staticmethod
    def _atomic(conn: Connection, caller: object | None) -> contextlib.AbstractContextManager[Any]:
        """Our own transaction; on a caller's connection, their open transaction (never committed here)."""
        return conn.transaction() if caller is None or conn.autocommit else contextlib.nullcontext()

    @staticmethod
    def _pipeline(conn: Connection, caller: object | None) -> contextlib.AbstractContextManager[Any]:
        """Pipeline mode on our own connections (statements whose results are not read cost no round trip)."""
        return conn.pipeline() if caller is None else contextlib.nullcontext()

    def create_runs(self, runs: Sequence[NewRun], *, now: datetime | None = None) -> list[str | None]:
        return self._create_runs(runs, now, None)

    def create_runs_in(
        self, connection: object, runs: Sequence[NewRun], *, now: datetime | None = None
    ) -> list[str | None]:
        """create_runs inside the caller's open transaction (TransactionalEnqueue; never committed here)."""
        return self._create_runs(runs, now, connection)

    def _create_runs(self, runs: Sequence[NewRun], now: datetime | None, connection: object | None) -> list[str | None]:
        """Runs without flow control in one statement; the others through admission.py, without debounce and
        batching (they gather events, and these runs have none), in one transaction."""
        at = self._at(now)
        plain = [r for r in runs if r.flow is None]
        flowed = [replace(r, flow=replace(r.flow, debounce=None, batch=None)) for r in runs if r.flow is not None]
        owners: dict[str, str | None] = {r.id: r.id for r in plain}
        with self._connection("create_runs", connection) as conn:
            if plain:
                run(conn, "create_runs", p.unnested(p.run_params(plain, at)))
            if flowed:
                with self._pipeline(conn, connection), self._atomic(conn, connection):
                    outcomes = admission.admit(conn, [(r, None) for r in flowed], at)
                owners |= {r.id: r.id if o is None else o[1] for r, o in zip(flowed, outcomes, strict=True)}
        return [owners[r.id] for r in runs]

    # the queue


def _accepted(
    events: Sequence[NewEvent],
    firsts: dict[str, NewEvent],
    inserted: set[str],
    started: dict[str, tuple[str, ...]],
    existing: dict[str, list[str]],
) -> list[AcceptedEvent]:
    """Per event as given: new, a repeat within the batch (of the first), or one stored before.

    `started`: the runs a new event owns when flow control decided them (else all of its runs)."""
    accepted, seen = [], set()
    for event in events:
        run_ids = started[event.id] if event.id in started else tuple(r.id for r in firsts[event.id].runs)
        if event.id in inserted and event.id not in seen:
            accepted.append(AcceptedEvent(event.id, False, run_ids))
        elif event.id in inserted:
            accepted.append(AcceptedEvent(event.id, True, tuple(sorted(run_ids))))
        else:
            accepted.append(AcceptedEvent(event.id, True, tuple(existing.get(event.id, ()))))
        seen.add(event.id)
    return accepted
