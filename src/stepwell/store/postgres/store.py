"""PostgreSQL store: psycopg 3, a small bounded pool, SKIP LOCKED claims, LISTEN/NOTIFY wake-ups.

Pooled connections run in autocommit, so a verb that is one statement costs one round trip; a
verb of several statements runs them in one transaction, pipelined. Batches travel as arrays
(see queries.sql). Time is the database's (`now()`) unless the store was given a clock (tests).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from psycopg import sql
from psycopg_pool import ConnectionPool

from stepwell.clock import Clock
from stepwell.errors import LeaseLost
from stepwell.model.ids import new_token
from stepwell.model.records import (
    ChildResult,
    DeadLetter,
    Disposition,
    ErrorInfo,
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
    Retention,
    RunFilter,
    Settlement,
    StepWrite,
)
from stepwell.store.failure import failure_handler_input
from stepwell.store.postgres import cron, waiting
from stepwell.store.postgres import params as p
from stepwell.store.postgres.listener import Listener
from stepwell.store.postgres.options import (
    PostgresOptions,
    connection_kwargs,
    listener_kwargs,
    session_settings,
    split_url,
)
from stepwell.store.postgres.outbox import caller_connection
from stepwell.store.postgres.statements import Connection, Q, one, run, same, translate
from stepwell.store.rows import error_bytes, error_or_none, error_required, json_or_none, step_from_row
from stepwell.store.sqlfile import load_migrations

_PACKAGE = "stepwell.store.postgres"


class PostgresStore:
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
            open=True,
        )
        self._listeners: set[Listener] = set()
        self._listeners_lock = threading.Lock()

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
            with self._pool.connection() as conn:
                yield conn

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
        """Under a transaction-scoped advisory lock (per schema), so that concurrent starters queue up."""
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

    # ingest

    def append_events(
        self,
        events: Sequence[NewEvent],
        *,
        now: datetime | None = None,
        conditions: ConditionCheck | None = None,
        connection: object | None = None,
    ) -> list[AcceptedEvent]:
        """One statement when no wait listens for these event names; else a transaction that resumes waits."""
        at = self._at(now)
        firsts: dict[str, NewEvent] = {}
        for event in events:
            firsts.setdefault(event.id, event)  # a repeat within the batch is a duplicate of the first
        batch = list(firsts.values())
        with self._connection("append_events", connection) as conn:
            inserted, names, paths, _ = one(conn, "insert_events", p.event_params(batch, at, if_no_waits=True))
            if names:
                with contextlib.nullcontext() if connection is not None else conn.transaction():
                    inserted, names, paths, _ = one(conn, "insert_events", p.event_params(batch, at, if_no_waits=False))
                    new = [event for event in batch if event.id in set(inserted)]
                    resumed = waiting.resume_waits(conn, new, names, paths, conditions, at)
                    only_resumed = [event_id for event_id in resumed if not firsts[event_id].runs]
                    if only_resumed:
                        run(conn, "set_resumed", {"event_ids": only_resumed})
            known = [event.id for event in batch if event.id not in set(inserted)]
            existing: dict[str, list[str]] = {}
            if known:
                existing = dict(run(conn, "runs_of_events", {"event_ids": known}).fetchall())
        return _accepted(events, firsts, set(inserted), existing)

    def create_runs(
        self, runs: Sequence[NewRun], *, now: datetime | None = None, connection: object | None = None
    ) -> None:
        if runs:
            with self._connection("create_runs", connection) as conn:
                run(conn, "insert_runs", p.run_params(runs, self._at(now)))

    # the queue

    def claim_runs(
        self, *, worker_id: str, limit: int, lease: timedelta, now: datetime | None = None
    ) -> list[ClaimedRun]:
        token = new_token()
        params = {"worker_id": worker_id, "token": token, "lease": lease, "now": self._at(now), "limit": limit}
        with self._connection("claim_runs") as conn:
            rows = run(conn, "claim_runs", params).fetchall()
        return sorted((p.claimed_run(row, token) for row in rows), key=lambda c: c.run_id)

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
            row = run(conn, "time_out_step", params).fetchone()
            if row is None or row[0] == 0:
                raise LeaseLost(f"run {lease.run_id}: lease lost; the timeout of step {step_id!r} was not written")
            if row[3] == StepStatus.WAITING:  # resolved by a concurrent event after this statement's snapshot
                row = (0, *one(conn, "step_of_run", {"run_id": lease.run_id, "step_id": step_id}))
        return step_from_row(row[1:], same)

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

    # settling

    def settle_runs(self, settlements: Sequence[Settlement], *, now: datetime | None = None) -> list[str]:
        """One statement per kind of outcome, each for the whole batch, all in one pipelined transaction."""
        at = self._at(now)
        plan = p.settlement_plan(settlements, at)
        if not plan:
            return []
        settled: set[str] = set()
        with self._connection("settle_runs") as conn:
            with conn.pipeline(), conn.transaction():
                cursors = [(name, run(conn, name, params)) for name, params in plan]
                finished: list[waiting.Finished] = []
                for name, cursor in cursors:
                    rows = cursor.fetchall()
                    settled.update(row[0] for row in rows)
                    if name == "complete_runs":
                        finished += waiting.finished_rows(rows, RunStatus.COMPLETED, output_column=4, error_column=None)
                    elif name == "fail_runs":
                        finished += self._after_failures(conn, rows, at)
                fan_outs = waiting.children_finished(conn, finished, at)
            waiting.finish_fan_outs(conn, fan_outs, at)
        return [s.lease.run_id for s in settlements if s.lease.run_id not in settled]

    def _after_failures(self, conn: Connection, rows: Sequence[Any], at: datetime | None) -> list[waiting.Finished]:
        """Queue the `on_failure` run of each failed run that has one, in the failure's transaction."""
        handlers = [
            failure_handler_input(
                run_id=run_id,
                function=function,
                handler=on_failure,
                error=error_required(error),
                event_name=event_name,
                event_data=json_or_none(event_data),
                now=at or failed_at,
            )
            for run_id, _, _, _, error, function, on_failure, event_name, event_data, failed_at in rows
            if on_failure
        ]
        if handlers:
            run(conn, "insert_runs", p.run_params(handlers, at))
        return waiting.finished_rows(rows, RunStatus.FAILED, output_column=None, error_column=4)

    def release_runs(self, leases: Sequence[Lease], *, now: datetime | None = None) -> int:
        if not leases:
            return 0
        with self._connection("release_runs") as conn:
            released, _ = one(conn, "release_runs", {**p.lease_arrays(leases), "now": self._at(now)})
        return int(released)

    def rescue_expired_leases(self, *, now: datetime | None = None, limit: int = 1000) -> int:
        at = self._at(now)
        with self._connection("rescue_expired_leases") as conn:
            with conn.transaction():
                expired = run(conn, "expired_leases", {"now": at, "limit": limit}).fetchall()
                requeue, dead = [], []
                for run_id, token, attempt, max_attempts in expired:
                    error = ErrorInfo(
                        "LeaseExpired",
                        f"the worker running attempt {attempt} stopped renewing its lease (crashed or hung)",
                    )
                    if attempt >= max_attempts:
                        dead.append(Fail(Lease(run_id, token, datetime.max), error, FailureReason.LEASE_LOST))
                    else:
                        requeue.append((run_id, token, error_bytes(error)))
                if requeue:
                    run_ids, tokens, errors = (list(column) for column in zip(*requeue, strict=True))
                    params = {"run_ids": run_ids, "tokens": tokens, "errors": errors, "now": at}
                    run(conn, "requeue_expired", params)
                fan_outs: list[tuple[str, str]] = []
                if dead:
                    rows = run(conn, "fail_runs", p.fail_params(dead, at)).fetchall()
                    fan_outs = waiting.children_finished(conn, self._after_failures(conn, rows, at), at)
            waiting.finish_fan_outs(conn, fan_outs, at)
        return len(expired)

    def cancel_runs(self, run_ids: Sequence[str], *, now: datetime | None = None) -> list[str]:
        at = self._at(now)
        wanted = list(dict.fromkeys(run_ids))
        with self._connection("cancel_runs") as conn:
            with conn.transaction():
                rows = run(conn, "cancel_runs", {"run_ids": wanted, "now": at}).fetchall()
                finished = waiting.finished_rows(rows, RunStatus.CANCELLED, output_column=None, error_column=4)
                fan_outs = waiting.children_finished(conn, finished, at)
            waiting.finish_fan_outs(conn, fan_outs, at)
        cancelled = {row[0] for row in rows}
        return [run_id for run_id in wanted if run_id in cancelled]

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
            marked, _ = one(conn, "redrive_runs", {"run_ids": candidates, "now": self._at(now)})
        redriven = set(marked)
        return [run_id for run_id in candidates if run_id in redriven]

    # reading

    def get_run(self, run_id: str) -> Run | None:
        with self._connection("get_run") as conn, conn.pipeline():
            run_cursor = run(conn, "get_run", {"id": run_id})
            steps_cursor = run(conn, "steps_of_run", {"run_id": run_id})
            errors_cursor = run(conn, "run_errors", {"run_id": run_id})
            row, step_rows, error_rows = run_cursor.fetchone(), steps_cursor.fetchall(), errors_cursor.fetchall()
        if row is None:
            return None
        steps = tuple(step_from_row(r, same) for r in step_rows)
        errors = tuple(e for (data,) in error_rows if (e := error_or_none(data)))
        return p.run_from_row(row, steps, errors)

    def list_runs(self, query: RunFilter) -> list[Run]:
        params = {
            "event_id": query.event_id,
            "function": query.function,
            "status": query.status.value if query.status else None,
            "parent_id": query.parent_id,
            "limit": query.limit,
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
        event_id_, name, data, ts, received_at, disposition, run_ids = row
        return EventRecord(
            event_id_, name, json_or_none(data), ts, received_at, Disposition(disposition), tuple(run_ids)
        )

    def list_dead_letters(self, *, function: str | None = None, limit: int = 100) -> list[DeadLetter]:
        with self._connection("list_dead_letters") as conn:
            rows = run(conn, "list_dead_letters", {"function": function, "limit": limit}).fetchall()
        return [
            DeadLetter(run_id, fn, error_required(error), FailureReason(reason), failed_at, attempts, count)
            for run_id, fn, error, reason, failed_at, attempts, count in rows
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
            return cron.fire_tick(conn, tick, self._at(now), append_events=self.append_events)

    # wake-ups

    def subscribe(self, on_work: Callable[[], None]) -> Callable[[], None] | None:
        """LISTEN in a daemon thread that reconnects forever; None when `listen` is off (PgBouncer)."""
        if not self.options.listen:
            return None
        listener = Listener(self.conninfo, listener_kwargs(self.conninfo, self.options), on_work)
        with self._listeners_lock:
            self._listeners.add(listener)
        listener.start()

        def unsubscribe() -> None:
            with self._listeners_lock:
                self._listeners.discard(listener)
            listener.stop()

        return unsubscribe


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
    events: Sequence[NewEvent], firsts: dict[str, NewEvent], inserted: set[str], existing: dict[str, list[str]]
) -> list[AcceptedEvent]:
    """Per event as given: new, a repeat within the batch (of the first), or one stored before."""
    accepted, seen = [], set()
    for event in events:
        if event.id in inserted and event.id not in seen:
            accepted.append(AcceptedEvent(event.id, False, tuple(r.id for r in event.runs)))
        elif event.id in inserted:
            accepted.append(AcceptedEvent(event.id, True, tuple(sorted(r.id for r in firsts[event.id].runs))))
        else:
            accepted.append(AcceptedEvent(event.id, True, tuple(existing.get(event.id, ()))))
        seen.add(event.id)
    return accepted
