"""PostgreSQL store: psycopg 3, a small bounded pool, SKIP LOCKED claims, LISTEN/NOTIFY wake-ups.

Pooled connections run in autocommit, so a verb that is one statement costs one round trip; a
verb of several statements runs them in one transaction, pipelined. Batches travel as arrays
(see queries.sql). Time is the database's (`now()`) unless the store was given a clock (tests).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from stepwell.clock import Clock
from stepwell.errors import LeaseLost, StoreUnavailable
from stepwell.model.definition import FunctionDefinition
from stepwell.model.ids import new_token
from stepwell.model.records import (
    ChildResult,
    DeadLetter,
    Disposition,
    ErrorInfo,
    Event,
    EventRecord,
    FailureReason,
    FanOutCounts,
    Run,
    RunStatus,
    Step,
    StepStatus,
)
from stepwell.store.base import (
    AcceptedEvent,
    ClaimedRun,
    ConditionCheck,
    CronTick,
    Fail,
    Lease,
    NewChild,
    NewEvent,
    NewRun,
    NewWait,
    PurgeCounts,
    QueueStats,
    RedriveRequest,
    RegistryChange,
    RegistryListing,
    Retention,
    RunFilter,
    Settlement,
    StepWrite,
)
from stepwell.store.failure import failure_handler_input
from stepwell.store.flowrules import BATCH, GATED
from stepwell.store.plan.failures import RUN_TIMED_OUT, ExpiredLease, plan_rescue
from stepwell.store.postgres import admission, cron, flow, registry, waiting
from stepwell.store.postgres import params as p
from stepwell.store.postgres.apikeys import ApiKeyVerbs
from stepwell.store.postgres.audit import DashboardVerbs
from stepwell.store.postgres.insight import InsightVerbs
from stepwell.store.postgres.listener import Listener
from stepwell.store.postgres.logs import ObservabilityVerbs
from stepwell.store.postgres.options import (
    PostgresOptions,
    connection_kwargs,
    listener_kwargs,
    session_settings,
    split_url,
)
from stepwell.store.postgres.outbox import caller_connection
from stepwell.store.postgres.push import PushVerbs
from stepwell.store.postgres.rows import FailedRow, candidate_rows, ended_rows, failed_rows, stopped_rows
from stepwell.store.postgres.statements import Connection, Cursor, Q, one, run, same, translate
from stepwell.store.rows import error_bytes, error_or_none, error_required, json_or_none, step_from_row
from stepwell.store.sqlfile import load_migrations

_PACKAGE = "stepwell.store.postgres"
log = logging.getLogger("stepwell.store.postgres")
_ADMITTING_STREAK = 32  # after a pick with runs to admit, claims skip the one-statement try this many times


class PostgresStore(ApiKeyVerbs, ObservabilityVerbs, PushVerbs, DashboardVerbs, InsightVerbs):
    def __init__(self, url: str, *, clock: Clock | None = None, options: PostgresOptions | None = None) -> None:
        """`clock=None`: the database clock rules every time; a clock pins it (tests pass a VirtualClock).

        `options` are overridden by `stepwell_*` query parameters of the URL (see PostgresOptions).
        """
        self.conninfo, self.options = split_url(url, options)
        self.clock = clock
        self._settings = session_settings(self.options)
        self._pool = ConnectionPool(
            self.conninfo,
            kwargs=connection_kwargs(self.conninfo, self.options),
            min_size=1,
            max_size=self.options.pool_max,
            timeout=self.options.pool_timeout,
            configure=self._configure,
            name="stepwell",
            num_workers=1,
            open=False,  # opened by the first verb: migrate's direct connection comes first, never beside it
        )
        self._pool_opened = False
        self._pool_lock = threading.Lock()
        self._listeners: set[Listener] = set()
        self._listeners_lock = threading.Lock()
        self._admitting = 0  # how many claims to come go straight to admitting (flow control), without a first try

    # connections and time

    def _configure(self, conn: Connection) -> None:
        """Every new pooled session: statement and idle-in-transaction timeouts, UTC."""
        run(conn, "configure_session", self._settings)

    @contextlib.contextmanager
    def _connection(self, operation: str, caller: object | None = None) -> Iterator[Connection]:
        """A pooled connection (autocommit), or the caller's own (their transaction, never committed here)."""
        with translate(operation):
            if caller is not None:
                yield caller_connection(caller)
                return
            with self._open_pool().connection() as conn:
                yield conn

    def _open_pool(self) -> ConnectionPool[Connection]:
        """The pool, opened on first use. Opening it in `__init__` would let its first connection
        overlap migrate's direct one: one connection over `stepwell_pool_max` per process at start."""
        if not self._pool_opened:
            with self._pool_lock:
                if not self._pool_opened:
                    self._pool.open()
                    self._pool_opened = True
        return self._pool

    def _at(self, now: datetime | None) -> datetime | None:
        """The time to pass as %(now)s: None means the database's now()."""
        if now is not None:
            return now
        return None if self.clock is None else self.clock.now()

    def now(self) -> datetime:
        if self.clock is not None:
            return self.clock.now()
        with self._connection("now") as conn:
            return one(conn, "database_now", {})[0]  # type: ignore[no-any-return]

    def close(self) -> None:
        with self._listeners_lock:
            listeners, self._listeners = list(self._listeners), set()
        for listener in listeners:
            listener.stop()
        self._pool.close()

    # schema

    def migrate(self) -> list[int]:
        """Under a transaction-scoped advisory lock (per schema), so that concurrent starters queue up.

        The first thing a process does with the store: a direct connection first says why the
        database cannot be reached, if it cannot."""
        self._direct_connection().close()
        applied: list[int] = []
        with self._connection("migrate") as conn, conn.transaction():
            run(conn, "migrations_lock", {})
            run(conn, "create_migrations_table", {})
            done = {row[0] for row in run(conn, "applied_migrations", {}).fetchall()}
            for version, name, script in load_migrations(_PACKAGE):
                if version not in done:
                    conn.execute(script.encode())  # a whole file, no parameters: one simple-protocol script
                    run(conn, "record_migration", {"version": version, "name": name})
                    applied.append(version)
        return applied

    def applied_migrations(self) -> list[int]:
        with translate("applied_migrations"), self._direct_connection() as conn:
            if not one(conn, "migrations_table_exists", {})[0]:
                return []
            return sorted(row[0] for row in run(conn, "applied_migrations", {}).fetchall())

    def _direct_connection(self) -> Connection:
        """A connection of its own, not the pool's: a wrong URL (role, password, database, host) fails
        at once with the server's reason, said once, instead of after the pool's timeout without it."""
        try:
            return psycopg.connect(self.conninfo, **connection_kwargs(self.conninfo, self.options))
        except psycopg.Error as err:
            reason = " ".join(str(err).split())
            raise StoreUnavailable(f"cannot connect to PostgreSQL: {reason}") from None

    # ingest

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
                inserted, names, _, _ = one(conn, "insert_events", params)
            if flowed or names:
                with self._pipeline(conn, connection), self._atomic(conn, connection):
                    registry.check(conn, gate)
                    inserted, started, fan_outs = admission.store_events(conn, batch, at, conditions, self._cancel)
                waiting.finish_fan_outs(conn, fan_outs, at)  # after the commit that cancelled their children
            stored = set(inserted)  # once, not per event: a batch of n is O(n)
            known = [event.id for event in batch if event.id not in stored]
            existing: dict[str, list[str]] = {}
            if known:
                existing = dict(run(conn, "runs_of_events", {"event_ids": known}).fetchall())
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
                run(conn, "insert_runs", p.run_params(plain, at))
            if flowed:
                with self._pipeline(conn, connection), self._atomic(conn, connection):
                    outcomes = admission.admit(conn, [(r, None) for r in flowed], at)
                owners |= {r.id: r.id if o is None else o[1] for r, o in zip(flowed, outcomes, strict=True)}
        return [owners[r.id] for r in runs]

    # the queue

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

    def record_step(self, lease: Lease, step: StepWrite, *, now: datetime | None = None) -> Step:
        with self._connection("record_step") as conn:
            row = run(conn, "upsert_step", p.step_params(lease, step, self._at(now))).fetchone()
        if row is None:
            raise LeaseLost(f"run {lease.run_id}: lease lost; step {step.step_id!r} was not recorded")
        return p.written_step(step, row)

    def _record_step_and(
        self, operation: str, lease: Lease, step: StepWrite, at: datetime | None, name: str, params: dict[str, Any]
    ) -> Step:
        """A step and one more fenced write in one transaction (one round trip, pipelined)."""
        with self._connection(operation) as conn, conn.pipeline(), conn.transaction():
            written = run(conn, "upsert_step", p.step_params(lease, step, at))
            run(conn, name, params)
            row = written.fetchone()
        if row is None:
            raise LeaseLost(f"run {lease.run_id}: lease lost; step {step.step_id!r} was not recorded")
        return p.written_step(step, row)

    # waiting: events, children, fan-outs

    def register_wait(self, lease: Lease, step: StepWrite, wait: NewWait, *, now: datetime | None = None) -> Step:
        at = self._at(now)
        params = {
            "run_id": lease.run_id,
            "token": lease.token,
            "step_id": step.step_id,
            "event_name": wait.event_name,
            "match_path": wait.match_path,
            "match_value": wait.match_value,
            "condition": wait.condition,
            "origin": wait.origin,
            "timeout": wait.timeout,
            "now": at,
        }
        write = replace(step, wake_at=None, sleep_for=wait.timeout)  # wake_at: the timeout, by the store's clock
        return self._record_step_and("register_wait", lease, write, at, "insert_wait", params)

    def start_child(self, lease: Lease, step: StepWrite, child: NewChild, *, now: datetime | None = None) -> Step:
        at = self._at(now)
        params = p.children_params(lease, step.step_id, [child], at)
        return self._record_step_and("start_child", lease, step, at, "insert_children", params)

    def time_out_step(
        self, lease: Lease, step_id: str, *, error: ErrorInfo | None, now: datetime | None = None
    ) -> Step:
        params = {
            "run_id": lease.run_id,
            "token": lease.token,
            "step_id": step_id,
            "status": (StepStatus.COMPLETED if error is None else StepStatus.FAILED).value,
            "error": error_bytes(error),
            "now": self._at(now),
        }
        with self._connection("time_out_step") as conn:
            with conn.transaction():
                row = run(conn, "time_out_step", params).fetchone()
                if row is None or row[0] == 0:
                    raise LeaseLost(f"run {lease.run_id}: lease lost; the timeout of step {step_id!r} was not written")
                child, child_flags = row[11:]
                if child_flags:  # the invoked child it cancelled has flow control
                    flow.runs_stopped(conn, ended=[(child, child_flags, False)])
            if row[3] == StepStatus.WAITING:  # resolved by a concurrent event after this statement's snapshot
                row = (0, *one(conn, "step_of_run", {"run_id": lease.run_id, "step_id": step_id}))
        return step_from_row(row[1:11], same)

    def open_fan_out(
        self, lease: Lease, step: StepWrite, *, function: str, tolerate: float, now: datetime | None = None
    ) -> Step:
        at = self._at(now)
        params = {
            "run_id": lease.run_id,
            "token": lease.token,
            "step_id": step.step_id,
            "function": function,
            "tolerate": tolerate,
            "now": at,
        }
        return self._record_step_and("open_fan_out", lease, step, at, "insert_fan_out", params)

    def create_children(
        self, lease: Lease, step_id: str, children: Sequence[NewChild], *, now: datetime | None = None
    ) -> int:
        with self._connection("create_children") as conn:
            held, created, _ = one(conn, "insert_children", p.children_params(lease, step_id, children, self._at(now)))
        if not held:
            raise LeaseLost(f"run {lease.run_id}: lease lost; children of step {step_id!r} were not written")
        return int(created)

    def seal_fan_out(self, lease: Lease, step_id: str, total: int, *, now: datetime | None = None) -> FanOutCounts:
        at = self._at(now)
        with self._connection("seal_fan_out") as conn:
            params = {"run_id": lease.run_id, "token": lease.token, "step_id": step_id, "total": total}
            if not one(conn, "seal_fan_out", params)[0]:
                raise LeaseLost(f"run {lease.run_id}: lease lost; the fan-out of step {step_id!r} was not written")
            waiting.finish_fan_outs(conn, [(lease.run_id, step_id)], at)  # after the seal's commit
            return waiting.fan_out_counts(conn, lease.run_id, step_id)

    def fan_out_counts(self, parent_id: str, step_id: str) -> FanOutCounts:
        with self._connection("fan_out_counts") as conn:
            return waiting.fan_out_counts(conn, parent_id, step_id)

    def fan_out_results(self, parent_id: str, step_id: str, *, after: int, limit: int) -> list[ChildResult]:
        with self._connection("fan_out_results") as conn:
            return waiting.fan_out_page(conn, parent_id, step_id, after, limit)

    def wake_finished_fan_outs(self, *, now: datetime | None = None, limit: int = 100) -> int:
        with self._connection("wake_finished_fan_outs") as conn:
            candidates = [(row[0], row[1]) for row in run(conn, "unfinished_fan_outs", {"limit": limit}).fetchall()]
            return waiting.finish_fan_outs(conn, candidates, self._at(now))

    # flow control: keys and timeouts

    def set_key_paused(self, function: str, key: str, paused: bool, *, now: datetime | None = None) -> None:
        with self._connection("set_key_paused") as conn, conn.transaction():
            flow.set_paused(conn, function, key, paused)

    def drain_key(self, function: str, key: str, *, now: datetime | None = None) -> list[str]:
        at = self._at(now)
        with self._connection("drain_key") as conn:
            with conn.transaction():
                pending = [row[0] for row in run(conn, "key_pending", {"function": function, "key": key}).fetchall()]
                ids, fan_outs = self._cancel(conn, pending, at) if pending else ([], [])
            waiting.finish_fan_outs(conn, fan_outs, at)
        cancelled = set(ids)
        return [run_id for run_id in pending if run_id in cancelled]

    def skip_key(self, function: str, key: str, *, now: datetime | None = None) -> str | None:
        with self._connection("skip_key") as conn, conn.transaction():
            return flow.skip_parked(conn, function, key)

    def fail_overdue_runs(self, *, now: datetime | None = None, limit: int = 1000) -> int:
        """A run's lease does not protect it from its whole-run timeout: fail_runs without a token."""
        at = self._at(now)
        error = error_bytes(RUN_TIMED_OUT)
        with self._connection("fail_overdue_runs") as conn:
            with conn.transaction():
                overdue = [row[0] for row in run(conn, "overdue_runs", {"now": at, "limit": limit}).fetchall()]
                reasons = [FailureReason.TIMED_OUT.value] * len(overdue)
                params = {"run_ids": overdue, "tokens": [None] * len(overdue), "errors": [error] * len(overdue)}
                fail = {**params, "reasons": reasons, "now": at}
                rows = failed_rows(run(conn, "fail_runs", fail).fetchall()) if overdue else []
                fan_outs = waiting.children_finished(conn, self._after_failures(conn, rows, at), at)
                flow.runs_stopped(conn, ended=[(row.run_id, row.flags, True) for row in rows if row.flags])
            waiting.finish_fan_outs(conn, fan_outs, at)
        return len(rows)

    # settling

    def settle_runs(self, settlements: Sequence[Settlement], *, now: datetime | None = None) -> list[str]:
        """One statement per kind of outcome, each for the whole batch, all in one pipelined transaction.

        Releases (attempts interrupted by the store) are release_runs in the same transaction."""
        at = self._at(now)
        plan = p.settlement_plan(settlements, at)
        if not plan:
            return []
        settled: set[str] = set()
        with self._connection("settle_runs") as conn:
            with conn.pipeline(), conn.transaction():
                cursors = [(name, run(conn, name, params)) for name, params in plan]
                finished: list[waiting.Finished] = []
                left: list[tuple[str, int]] = []  # (run, flags) that stopped running
                ended: list[tuple[str, int, bool]] = []  # (run, flags, failed) that reached a terminal status
                for name, cursor in cursors:
                    raw = cursor.fetchall()
                    if name == "complete_runs":
                        completed = ended_rows(raw)
                        settled.update(row.run_id for row in completed)
                        finished += waiting.finished_rows(completed, RunStatus.COMPLETED)
                        ended += [(row.run_id, row.flags, False) for row in completed if row.flags]
                    elif name == "fail_runs":
                        failed = failed_rows(raw)
                        settled.update(row.run_id for row in failed)
                        finished += self._after_failures(conn, failed, at)
                        ended += [(row.run_id, row.flags, True) for row in failed if row.flags]
                    else:  # suspended, retried, released
                        if name == "release_runs":  # one row: (count, notified, ids, flags)
                            raw = list(zip(raw[0][2], raw[0][3], strict=True))
                        stopped = stopped_rows(raw)
                        settled.update(row.run_id for row in stopped)
                        left += [(row.run_id, row.flags) for row in stopped if row.flags]
                fan_outs = waiting.children_finished(conn, finished, at)
                flow.runs_stopped(conn, left=left, ended=ended)
            waiting.finish_fan_outs(conn, fan_outs, at)
        return [s.lease.run_id for s in settlements if s.lease.run_id not in settled]

    def _after_failures(
        self, conn: Connection, rows: Sequence[FailedRow], at: datetime | None
    ) -> list[waiting.Finished]:
        """Queue the `on_failure` run of each failed run that has one, in the failure's transaction."""
        handlers = [
            failure_handler_input(
                run_id=row.run_id,
                function=row.function,
                handler=row.on_failure,
                error=error_required(row.error),
                event_name=row.event_name,
                event_data=json_or_none(row.event_data),
                now=at or row.failed_at,
            )
            for row in rows
            if row.on_failure
        ]
        if handlers:
            run(conn, "insert_runs", p.run_params(handlers, at))
        return waiting.finished_rows(rows, RunStatus.FAILED)

    def release_runs(self, leases: Sequence[Lease], *, now: datetime | None = None) -> int:
        if not leases:
            return 0
        with self._connection("release_runs") as conn, conn.pipeline(), conn.transaction():
            released, _, ids, flags = one(conn, "release_runs", {**p.lease_arrays(leases), "now": self._at(now)})
            flow.runs_stopped(conn, left=[(run_id, f) for run_id, f in zip(ids, flags, strict=True) if f])
        return int(released)

    def rescue_expired_leases(self, *, now: datetime | None = None, limit: int = 1000) -> int:
        at = self._at(now)
        with self._connection("rescue_expired_leases") as conn:
            with conn.transaction():
                expired = run(conn, "expired_leases", {"now": at, "limit": limit}).fetchall()
                rescue = plan_rescue([ExpiredLease(*row) for row in expired])
                dead = [
                    Fail(Lease(r.lease.run_id, r.lease.token, datetime.max), r.error, FailureReason.LEASE_LOST)
                    for r in rescue
                    if r.dead
                ]
                requeue = [r for r in rescue if not r.dead]
                left: list[tuple[str, int]] = []
                if requeue:
                    run_ids = [r.lease.run_id for r in requeue]
                    tokens = [r.lease.token for r in requeue]
                    errors = [error_bytes(r.error) for r in requeue]
                    params = {"run_ids": run_ids, "tokens": tokens, "errors": errors, "now": at}
                    _, _, ids, flags = one(conn, "requeue_expired", params)
                    left = list(zip(ids, flags, strict=True))
                fan_outs: list[tuple[str, str]] = []
                ended: list[tuple[str, int, bool]] = []
                if dead:
                    rows = failed_rows(run(conn, "fail_runs", p.fail_params(dead, at)).fetchall())
                    fan_outs = waiting.children_finished(conn, self._after_failures(conn, rows, at), at)
                    ended = [(row.run_id, row.flags, True) for row in rows if row.flags]
                flow.runs_stopped(conn, left=left, ended=ended)
            waiting.finish_fan_outs(conn, fan_outs, at)
        return len(expired)

    def cancel_runs(self, run_ids: Sequence[str], *, now: datetime | None = None) -> list[str]:
        at = self._at(now)
        wanted = list(dict.fromkeys(run_ids))
        with self._connection("cancel_runs") as conn:
            with conn.transaction():
                ids, fan_outs = self._cancel(conn, wanted, at)
            waiting.finish_fan_outs(conn, fan_outs, at)
        cancelled = set(ids)
        return [run_id for run_id in wanted if run_id in cancelled]

    @staticmethod
    def _cancel(conn: Connection, run_ids: list[str], at: datetime | None) -> tuple[list[str], list[tuple[str, str]]]:
        """Cancel unfinished runs and what that sets in motion (parents, flow control), in the open transaction;
        returns the runs cancelled and the fan-outs to check after the commit."""
        rows = ended_rows(run(conn, "cancel_runs", {"run_ids": run_ids, "now": at}).fetchall())
        finished = waiting.finished_rows(rows, RunStatus.CANCELLED)
        fan_outs = waiting.children_finished(conn, finished, at)
        flow.runs_stopped(conn, ended=[(row.run_id, row.flags, False) for row in rows if row.flags])
        return [row.run_id for row in rows], fan_outs

    def redrive(self, request: RedriveRequest, *, now: datetime | None = None) -> list[str]:
        """Candidates first; then one statement that locks, re-checks and requeues each open entry once."""
        with self._connection("redrive") as conn:
            if request.parent_id is not None:
                rows = run(conn, "open_dead_family", {"parent_id": request.parent_id}).fetchall()
                candidates = list(dict.fromkeys(row[0] for row in rows))
            elif request.run_ids:
                candidates = list(dict.fromkeys(request.run_ids))
            else:
                params = {"function": request.function, "since": request.since, "limit": request.limit}
                candidates = [row[0] for row in run(conn, "open_dead_letters_by_filter", params).fetchall()]
            if not candidates:
                return []
            with conn.transaction():
                marked, _, ordered = one(conn, "redrive_runs", {"run_ids": candidates, "now": self._at(now)})
                if ordered:
                    flow.rejoin_line(conn, ordered)
        redriven = set(marked)
        return [run_id for run_id in candidates if run_id in redriven]

    # reading

    def get_run(self, run_id: str) -> Run | None:
        with self._connection("get_run") as conn, conn.pipeline():
            run_cursor = run(conn, "get_run", {"id": run_id})
            steps_cursor = run(conn, "steps_of_run", {"run_id": run_id})
            errors_cursor = run(conn, "run_errors", {"run_id": run_id})
            explain_cursor = run(conn, "explain_run", {"run_id": run_id, "now": self._at(None)})
            row, step_rows, error_rows = run_cursor.fetchone(), steps_cursor.fetchall(), errors_cursor.fetchall()
            explained = explain_cursor.fetchone()
        if row is None or explained is None:
            return None
        reason = flow.explain(explained)
        steps = tuple(step_from_row(r, same) for r in step_rows)
        errors = tuple(e for (data,) in error_rows if (e := error_or_none(data)))
        return replace(p.run_from_row(row, steps, errors), waiting_reason=reason)

    def list_runs(self, query: RunFilter) -> list[Run]:
        params = {
            "event_id": query.event_id,
            "function": query.function,
            "status": query.status.value if query.status else None,
            "parent_id": query.parent_id,
            "limit": query.limit,
            "ordering_key": query.ordering_key,
            "created_after": query.created_after,
            "created_before": query.created_before,
            "page_at": query.page_after[0] if query.page_after else None,
            "page_id": query.page_after[1] if query.page_after else None,
        }
        with self._connection("list_runs") as conn:
            return [p.run_from_row(row) for row in run(conn, "list_runs", params).fetchall()]

    def get_run_input(self, run_id: str) -> tuple[str, bytes] | None:
        with self._connection("get_run_input") as conn:
            row = run(conn, "run_input", {"id": run_id}).fetchone()
        return None if row is None else (row[0], bytes(row[1]))

    def get_event(self, event_id: str) -> EventRecord | None:
        with self._connection("get_event") as conn:
            row = run(conn, "get_event", {"id": event_id}).fetchone()
        if row is None:
            return None
        event_id_, name, data, ts, received_at, disposition, run_ids, functions, reasons, skip_runs = row
        skipped = tuple(zip(functions, reasons, skip_runs, strict=True))
        return EventRecord(
            event_id_, name, json_or_none(data), ts, received_at, Disposition(disposition), tuple(run_ids), skipped
        )

    def list_dead_letters(self, *, function: str | None = None, limit: int = 100) -> list[DeadLetter]:
        with self._connection("list_dead_letters") as conn:
            rows = run(conn, "list_dead_letters", {"function": function, "limit": limit}).fetchall()
        return [
            DeadLetter(
                run_id, fn, error_required(error), FailureReason(reason), failed_at, attempts, count, key, policy
            )
            for run_id, fn, error, reason, failed_at, attempts, count, key, policy in rows
        ]

    def purge(self, retention: Retention, *, now: datetime | None = None) -> PurgeCounts:
        """Batches of `retention.batch`, each its own short transaction (long ones hold back vacuum)."""
        params = {
            "now": self._at(now),
            "completed": retention.completed,
            "dead_letters": retention.dead_letters,
            "batch": retention.batch,
        }
        runs = events = 0
        with self._connection("purge") as conn:
            while (deleted := len(run(conn, "purge_runs", params).fetchall())) > 0:
                runs += deleted
                if deleted < retention.batch:
                    break
            while (deleted := run(conn, "purge_events", params).rowcount) > 0:
                events += deleted
                if deleted < retention.batch:
                    break
        return PurgeCounts(runs=runs, events=events)

    def queue_stats(self, *, now: datetime | None = None) -> QueueStats:
        with self._connection("queue_stats") as conn:
            ready, scheduled, running, dead, next_due = one(conn, "queue_stats", {"now": self._at(now)})
        return QueueStats(ready, scheduled, running, dead, next_due)

    def fire_cron_tick(self, tick: CronTick, *, now: datetime | None = None) -> bool:
        with self._connection("fire_cron_tick") as conn:
            return cron.fire_tick(conn, tick, self._at(now), append_events=self.append_events_in)

    # wake-ups

    def subscribe(self, on_work: Callable[[], None]) -> Callable[[], None] | None:
        """LISTEN in a daemon thread that reconnects forever; None when `listen` is off (PgBouncer)."""
        if not self.options.listen:
            return None
        listener = Listener(self.conninfo, listener_kwargs(self.conninfo, self.options), on_work)
        with self._listeners_lock:
            self._listeners.add(listener)
        if not listener.start():
            log.warning("LISTEN is not set up yet; this process polls until it is")

        def unsubscribe() -> None:
            with self._listeners_lock:
                self._listeners.discard(listener)
            listener.stop()

        return unsubscribe

    # the function registry (store/postgres/registry.py)

    def register_functions(
        self, app: str, definitions: Sequence[FunctionDefinition], *, now: datetime | None = None
    ) -> RegistryChange:
        with self._connection("register_functions") as conn:
            return registry.register(conn, app, definitions, self._at(now))

    def list_functions(self) -> RegistryListing:
        with self._connection("list_functions") as conn:
            return registry.listing(conn)

    def set_function_paused(self, function: str, paused: bool, *, now: datetime | None = None) -> datetime | None:
        with self._connection("set_function_paused") as conn, conn.transaction():
            return registry.set_paused(conn, function, paused, self._at(now))


def migration_script() -> str:
    """Every migration as one SQL script, with its bookkeeping: what `migrate()` applies to an empty schema.

    For teams whose own tool (Alembic, Django) applies schema changes; run it in one transaction.
    """
    parts = [
        "-- Stepwell schema for PostgreSQL (what `stepwell migrate` applies). Run it in one transaction.",
        Q["create_migrations_table"] + ";",
    ]
    record = sql.SQL("INSERT INTO stepwell_migrations (version, name) VALUES ({}, {}) ON CONFLICT DO NOTHING;")
    for version, name, script in load_migrations(_PACKAGE):
        parts += [f"-- {name}", script.strip(), record.format(version, name).as_string()]
    return "\n\n".join(parts) + "\n"


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
