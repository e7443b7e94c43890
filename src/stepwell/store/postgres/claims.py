"""The PostgreSQL store's claim verbs (claim_runs, extend_leases), as a mixin of PostgresStore.

A claim is one statement (SKIP LOCKED, per-key order inside it); a pick with runs that must first
take a concurrency slot or a throttle turn goes through admission in a transaction (flow.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from stepwell.model.ids import new_token
from stepwell.model.records import Event
from stepwell.store.base import ClaimedRun, Lease
from stepwell.store.flowrules import BATCH, GATED
from stepwell.store.postgres import flow
from stepwell.store.postgres import params as p
from stepwell.store.postgres.rows import candidate_rows
from stepwell.store.postgres.statements import Connection, Cursor, run
from stepwell.store.rows import json_or_none

_ADMITTING_STREAK = 32  # after a pick with runs to admit, claims skip the one-statement try this many times


class ClaimVerbs:
    """claim_runs, extend_leases (see Store)."""

    if TYPE_CHECKING:

        def _connection(
            self, operation: str, caller: object | None = None
        ) -> contextlib.AbstractContextManager[Connection]: ...
        def _at(self, now: datetime | None) -> datetime | None: ...

        _admitting: int  # how many claims to come go straight to admitting (flow control), without a first try

    def claim_runs(
        self,
        *,
        worker_id: str,
        limit: int,
        lease: timedelta,
        now: datetime | None = None,
        functions: Sequence[str] | None = None,
    ) -> list[ClaimedRun]:
        """One statement; a transaction that admits them when the pick has runs that must first take a
        concurrency slot or a throttle turn. After such a pick, the next claims go straight there."""
        token = new_token()
        only = None if functions is None else list(functions)
        params = {"worker_id": worker_id, "token": token, "lease": lease, "now": self._at(now), "limit": limit}
        params["functions"] = only
        with self._connection("claim_runs") as conn:
            rows = [] if self._admitting > 0 else run(conn, "claim_runs", params).fetchall()
            if not rows or rows[0][0]:
                with conn.pipeline(), conn.transaction():
                    claiming, gated = self._claim_admitting(conn, params)
                rows = [] if claiming is None else claiming.fetchall()  # sent with the commit
                self._admitting = _ADMITTING_STREAK if gated else self._admitting - 1
            claimed = [row[1:] for row in rows if row[1] is not None]
            batches = self._batch_events(conn, [row[0] for row in claimed if row[9] & BATCH])
        return [p.claimed_run(row, token, batches.get(row[0], ())) for row in claimed]  # best first, as picked

    @staticmethod
    def _claim_admitting(conn: Connection, params: dict[str, Any]) -> tuple[Cursor | None, bool]:
        """Pick as claim_runs does, admit the runs under concurrency limits or a throttle, claim what may start.
        Returns the claim (rows as claim_runs returns them, to read) and whether any picked run needed admitting."""
        candidates = candidate_rows(run(conn, "claim_candidates", params).fetchall())
        gated = [c for c in candidates if c.flags & GATED]
        admitted = flow.admit_to_start(conn, gated) if gated else set()
        ids = [c.run_id for c in candidates if not c.flags & GATED or c.run_id in admitted]
        return (run(conn, "claim_picked", {**params, "ids": ids}) if ids else None), bool(gated)

    @staticmethod
    def _batch_events(conn: Connection, run_ids: list[str]) -> dict[str, list[Event]]:
        """The events of claimed batch runs, oldest first."""
        events: dict[str, list[Event]] = {}
        if run_ids:
            for run_id, event_id, name, data, ts in run(conn, "batch_events_of", {"run_ids": run_ids}).fetchall():
                events.setdefault(run_id, []).append(Event(event_id, name, json_or_none(data), ts))
        return events

    def extend_leases(self, leases: Sequence[Lease], *, lease: timedelta, now: datetime | None = None) -> list[Lease]:
        if not leases:
            return []
        params = {**p.lease_arrays(leases), "lease": lease, "now": self._at(now)}
        with self._connection("extend_leases") as conn:
            expiry: dict[str, datetime] = dict(run(conn, "extend_leases", params).fetchall())
        return [Lease(held.run_id, held.token, expiry[held.run_id]) for held in leases if held.run_id in expiry]
