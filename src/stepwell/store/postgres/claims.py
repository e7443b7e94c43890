"""The PostgreSQL store's claim verbs (claim_runs, settle_and_claim, extend_leases), as a mixin of PostgresStore.

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
from stepwell.store.base import ClaimedRun, Lease, SettledAndClaimed, Settlement
from stepwell.store.flowrules import BATCH, GATED
from stepwell.store.postgres import flow, waiting
from stepwell.store.postgres import params as p
from stepwell.store.postgres.lifecycle import settle
from stepwell.store.postgres.rows import ClaimRows, candidate_rows, claim_rows
from stepwell.store.postgres.statements import Connection, Cursor, run
from stepwell.store.rows import json_or_none

_ADMITTING_STREAK = 32  # after a pick with runs to admit, claims skip the one-statement try this many times


class ClaimVerbs:
    """claim_runs, settle_and_claim, extend_leases (see Store)."""

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
        params = _claim_params(worker_id, limit, lease, self._at(now), functions)
        with self._connection("claim_runs") as conn:
            first = None if self._admitting > 0 else claim_rows(run(conn, "claim_runs", params).fetchall())
            return self._claimed(conn, params, first)

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
        """The settle statements, then the claim statement, in one pipelined transaction: two round trips,
        as many as settle_runs alone. The claim goes last, so the transaction takes no lock after it
        (SKIP LOCKED: it waits for none).

        A claim that must first admit runs under flow control (its pick has runs that need a concurrency
        slot or a throttle turn, or a recent pick had) is not made in the settle's transaction: admitting
        locks slot rows, which the settle may hold too, in another order (see flow.py's lock order).
        It follows the settle's commit in a transaction of its own, as claim_runs makes it."""
        at = self._at(now)
        params = _claim_params(worker_id, limit, lease, at, functions)
        with self._connection("settle_and_claim") as conn:
            with conn.pipeline(), conn.transaction():
                refused, fan_outs = settle(conn, settlements, at)
                claiming = run(conn, "claim_runs", params) if self._admitting <= 0 else None
            first = None if claiming is None else claim_rows(claiming.fetchall())  # sent with the commit
            waiting.finish_fan_outs(conn, fan_outs, at)
            return SettledAndClaimed(refused, self._claimed(conn, params, first))

    def _claimed(self, conn: Connection, params: dict[str, Any], first: ClaimRows | None) -> list[ClaimedRun]:
        """The runs claim_runs' statement claimed (`first`), or, when it has not been run or found runs to
        admit, those of a transaction that admits them; with their batch events."""
        if first is None or first.gated:
            with conn.pipeline(), conn.transaction():
                claiming, gated = self._claim_admitting(conn, params)
            first = ClaimRows(gated, [] if claiming is None else claim_rows(claiming.fetchall()).claimed)
            self._admitting = _ADMITTING_STREAK if gated else self._admitting - 1
        batches = self._batch_events(conn, [row.run_id for row in first.claimed if row.flags & BATCH])
        token = params["token"]
        return [p.claimed_run(row, token, batches.get(row.run_id, ())) for row in first.claimed]  # best first

    @staticmethod
    def _claim_admitting(conn: Connection, params: dict[str, Any]) -> tuple[Cursor | None, bool]:
        """Pick as claim_runs does, admit the runs under concurrency limits or a throttle, claim what may start.
        Returns the claim (rows as claim_runs returns them, to decode) and whether any picked run needed admitting."""
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


def _claim_params(
    worker_id: str, limit: int, lease: timedelta, at: datetime | None, functions: Sequence[str] | None
) -> dict[str, Any]:
    """claim_runs' parameters, with the claim's fresh lease token."""
    only = None if functions is None else list(functions)
    return {"worker_id": worker_id, "token": new_token(), "lease": lease, "now": at, "limit": limit, "functions": only}
