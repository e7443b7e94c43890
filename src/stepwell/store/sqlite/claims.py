"""The SQLite store's claim verbs (claim_runs, settle_and_claim, extend_leases), as a mixin of SQLiteStore.

An idle claim reads on its own connection and takes no write lock; a claim that finds work admits
the picked runs under flow control (flow.py) and leases them in one write transaction.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import orjson

from stepwell.model.ids import new_token
from stepwell.model.records import (
    Event,
    Step,
)
from stepwell.store.base import (
    ClaimedRun,
    Lease,
    SettledAndClaimed,
    Settlement,
)
from stepwell.store.rows import json_or_none, step_from_row
from stepwell.store.sqlite import flow
from stepwell.store.sqlite.flow import F
from stepwell.store.sqlite.lifecycle import settle
from stepwell.store.sqlite.logs import trace_of
from stepwell.store.sqlite.rows import ClaimRow, candidate_rows, claim_rows
from stepwell.store.sqlite.times import micros, moment, moment_or_none
from stepwell.store.sqlite.waiting import Q


class ClaimVerbs:
    """claim_runs, settle_and_claim, extend_leases (see Store)."""

    if TYPE_CHECKING:

        def _write(self, operation: str) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...
        def _read(self, operation: str) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...
        def _now(self, now: datetime | None) -> int: ...

    def claim_runs(
        self,
        *,
        worker_id: str,
        limit: int,
        lease: timedelta,
        now: datetime | None = None,
        functions: Sequence[str] | None = None,
    ) -> list[ClaimedRun]:
        at = self._now(now)
        only = None if functions is None else orjson.dumps(list(functions)).decode()
        with self._read("claim_runs") as reader:
            if reader.execute(Q["claim_runs_any_ready"], {"now": at, "functions": only}).fetchone() is None:
                return []  # idle: no write lock taken, so idle workers do not queue on SQLite's lock
        with self._write("claim_runs") as conn:
            return claim(conn, worker_id=worker_id, limit=limit, lease=lease, at=at, functions=only)

    def settle_and_claim(
        self,
        settlements: Sequence[Settlement],
        *,
        worker_id: str,
        limit: int,
        lease: timedelta,
        now: datetime | None = None,
        functions: Sequence[str] | None = None,
    ) -> SettledAndClaimed:
        """settle_runs and claim_runs in one write transaction (flow control's admission included: the
        transaction holds the whole file, so no lock order to keep)."""
        at = self._now(now)
        only = None if functions is None else orjson.dumps(list(functions)).decode()
        with self._write("settle_and_claim") as conn:
            refused = [s.lease.run_id for s in settlements if not settle(conn, s, at)]
            claimed = claim(conn, worker_id=worker_id, limit=limit, lease=lease, at=at, functions=only)
        return SettledAndClaimed(refused, claimed)

    def extend_leases(self, leases: Sequence[Lease], *, lease: timedelta, now: datetime | None = None) -> list[Lease]:
        expires = self._now(now) + micros(lease)
        renewed = []
        with self._write("extend_leases") as conn:
            for held in leases:
                params = {"run_id": held.run_id, "token": held.token, "expires_at": expires}
                if conn.execute(Q["extend_leases"], params).fetchone() is not None:
                    renewed.append(Lease(held.run_id, held.token, moment(expires)))
        return renewed


def claim(
    conn: sqlite3.Connection, *, worker_id: str, limit: int, lease: timedelta, at: int, functions: str | None
) -> list[ClaimedRun]:
    """Pick up to `limit` ready runs, admit those under flow control, lease what may start, in the open
    write transaction. Shared by claim_runs and settle_and_claim."""
    token, expires = new_token(), at + micros(lease)
    candidates = candidate_rows(
        conn.execute(F["claim_candidates"], {"now": at, "limit": limit, "functions": functions})
    )
    gated = [(c.run_id, c.flags, c.throttle) for c in candidates if c.flags & flow.GATED]
    admitted = flow.admit_to_start(conn, gated, at) if gated else set()
    ids = [c.run_id for c in candidates if not c.flags & flow.GATED or c.run_id in admitted]
    if not ids:
        return []
    params = {"worker_id": worker_id, "token": token, "expires_at": expires, "now": at, "ids": orjson.dumps(ids)}
    rows = claim_rows(conn.execute(Q["claim_runs"], params))
    first_claims = {c.run_id for c in candidates if c.never_started}
    claimed = _claimed(conn, rows, first_claims, token, expires, at)
    position = {run_id: index for index, run_id in enumerate(ids)}
    claimed.sort(key=lambda c: position[c.run_id])
    return claimed


def _claimed(
    conn: sqlite3.Connection, rows: list[ClaimRow], first_claims: set[str], token: str, expires: int, at: int
) -> list[ClaimedRun]:
    """The claimed runs with their events and memoized steps: one query each for the whole batch."""
    event_ids = [row.event_id for row in rows if row.event_id is not None]
    events, event_traces = {}, {}
    if event_ids:
        for event_id, name, data, ts, parent, state in conn.execute(
            Q["claim_runs_events"], {"ids": orjson.dumps(event_ids)}
        ):
            events[event_id] = Event(event_id, name, json_or_none(data), moment(ts))
            event_traces[event_id] = trace_of(parent, state, 0)
    resumed = [row.run_id for row in rows if row.run_id not in first_claims]  # a first claim has no steps yet
    steps: dict[str, list[Step]] = {}
    if resumed:
        for run_id, *step in conn.execute(Q["claim_runs_steps"], {"ids": orjson.dumps(resumed)}):
            steps.setdefault(run_id, []).append(step_from_row(step, moment_or_none))
    lease_end, claimed_at = moment(expires), moment(at)
    claimed = []
    for row in rows:
        event = events.get(row.event_id) if row.event_id is not None else None
        if event is None:
            event = Event(None, row.input_name or row.function, json_or_none(row.input), moment(row.created_at))
        batch: tuple[Event, ...] = (event,)
        if row.flags & flow.BATCH:
            batch = tuple(
                Event(batch_id, name, json_or_none(data), moment(ts))
                for batch_id, name, data, ts in flow.batch_events(conn, row.run_id)
            )
        claimed.append(ClaimedRun(
            lease=Lease(row.run_id, token, lease_end), function=row.function, attempt=row.attempt,
            max_attempts=row.max_attempts, event=event, claimed_at=claimed_at,
            steps=tuple(steps.get(row.run_id, ())), events=batch, ready_at=moment(row.available_at),
            trace=trace_of(row.traceparent, row.tracestate, row.trace_link) if row.traceparent is not None
            else event_traces.get(row.event_id),
        ))  # fmt: skip
    return claimed
