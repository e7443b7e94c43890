"""SQLite store: WAL, one writer connection per process, readers on their own connections.

Several processes may share the file; `BEGIN IMMEDIATE`, retried briskly (writelock.py),
serialises their writers. Times are integer microseconds (see times.py); `now` comes from the injected clock.
This class owns connections and transactions; what happens inside them lives beside it:
lifecycle (runs in and out), waiting (events, children, fan-outs), flow (flow control), cron,
reads, schema.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import orjson

from stepwell.clock import Clock, SystemClock
from stepwell.errors import LeaseLost, StoreError, StoreFull, StoreUnavailable
from stepwell.model.definition import FunctionDefinition
from stepwell.model.ids import new_token
from stepwell.model.records import (
    ChildResult,
    DeadLetter,
    Disposition,
    ErrorInfo,
    Event,
    EventRecord,
    FanOutCounts,
    Run,
    Step,
    StepStatus,
)
from stepwell.store.base import (
    AcceptedEvent,
    ClaimedRun,
    ConditionCheck,
    CronTick,
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
from stepwell.store.rows import error_bytes, json_or_none, step_from_row
from stepwell.store.sqlite import cron, flow, lifecycle, reads, registry, schema, waiting
from stepwell.store.sqlite.apikeys import ApiKeyVerbs
from stepwell.store.sqlite.audit import DashboardVerbs
from stepwell.store.sqlite.insight import InsightVerbs
from stepwell.store.sqlite.logs import ObservabilityVerbs
from stepwell.store.sqlite.push import PushVerbs
from stepwell.store.sqlite.rows import ClaimRow, candidate_rows, claim_rows
from stepwell.store.sqlite.schema import migration_script
from stepwell.store.sqlite.times import EPOCH, micros, moment, moment_or_none, stamp
from stepwell.store.sqlite.waiting import Q
from stepwell.store.sqlite.watch import CommitWatcher
from stepwell.store.sqlite.writelock import begin_immediate

__all__ = ["SQLiteStore", "migration_script"]


class SQLiteStore(ApiKeyVerbs, ObservabilityVerbs, PushVerbs, DashboardVerbs, InsightVerbs):
    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Clock | None = None,
        synchronous: str = "NORMAL",
        busy_timeout_ms: int = 10_000,
    ) -> None:
        if synchronous.upper() not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous: {synchronous!r} must be 'NORMAL' or 'FULL'")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.clock = clock or SystemClock()
        self._pragmas = (f"PRAGMA busy_timeout = {int(busy_timeout_ms)}", f"PRAGMA synchronous = {synchronous.upper()}")
        self._lock_timeout = busy_timeout_ms / 1000
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._all_connections: list[sqlite3.Connection] = []
        self._writer = self._connect()
        with self._translate("open"):
            self._writer.execute("PRAGMA journal_mode = WAL")
            self._writer.execute("PRAGMA busy_timeout = 0")  # begin_immediate waits instead (writelock.py)
        with contextlib.suppress(OSError):
            os.chmod(self.path, 0o600)

    # connections and transactions

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        for pragma in self._pragmas:
            conn.execute(pragma)
        self._all_connections.append(conn)
        return conn

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    @contextlib.contextmanager
    def _translate(self, operation: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as err:
            text = str(err).lower()
            if "full" in text:
                raise StoreFull(f"{operation}: the database is out of space ({err}); nothing was stored") from err
            if "locked" in text or "busy" in text:
                raise StoreUnavailable(f"{operation}: the database stayed locked ({err}); nothing was stored") from err
            raise StoreError(f"{operation}: {err}") from err
        except sqlite3.DatabaseError as err:
            raise StoreError(f"{operation}: {err}") from err

    @contextlib.contextmanager
    def _write(self, operation: str) -> Iterator[sqlite3.Connection]:
        with self._write_lock, self._translate(operation):
            conn = self._writer
            begin_immediate(conn, self._lock_timeout)
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # the body failed, or COMMIT did: nothing of it stays
                    conn.execute("ROLLBACK")
                raise

    @contextlib.contextmanager
    def _read(self, operation: str) -> Iterator[sqlite3.Connection]:
        with self._translate(operation):
            yield self._reader()

    def _now(self, now: datetime | None) -> int:
        return micros((now or self.clock.now()) - EPOCH)

    def now(self) -> datetime:
        return self.clock.now()

    def close(self) -> None:
        for conn in self._all_connections:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        self._all_connections.clear()

    def migrate(self) -> list[int]:
        with self._write("migrate") as conn:
            return schema.migrate(conn, self._now(None))

    def applied_migrations(self) -> list[int]:
        with self._read("applied_migrations") as conn:
            return schema.applied(conn)

    # ingest

    def append_events(
        self,
        events: Sequence[NewEvent],
        *,
        now: datetime | None = None,
        conditions: ConditionCheck | None = None,
        registry_generation: int | None = None,
    ) -> list[AcceptedEvent]:
        at = self._now(now)
        accepted: list[AcceptedEvent] = []
        stored: list[bool] = []
        with self._write("append_events") as conn:
            registry.check_generation(conn, registry_generation)
            known = {row[0] for row in conn.execute(Q["known_events"], {"ids": orjson.dumps([e.id for e in events])})}
            for event in events:
                stored.append(event.id not in known)
                known.add(event.id)  # a repeat within the batch is a duplicate too
            fresh = [event for event, is_new in zip(events, stored, strict=True) if is_new]
            conn.executemany(Q["insert_event"], [
                {"id": e.id, "name": e.name, "data": e.data, "ts": stamp(e.ts) if e.ts else at, "now": at,
                 "disposition": (Disposition.STARTED if e.runs else Disposition.NO_MATCH).value}
                for e in fresh
            ])  # fmt: skip
            # waits and cancel_on first: an event must not cancel the runs it starts itself
            resumed = waiting.resume_waits(conn, events, stored, conditions, at, cancel=lifecycle.cancel)
            lifecycle.insert_event_runs(conn, fresh, at)
            owned = lifecycle.admit_event_flow_runs(conn, fresh, at)
            for event, is_new in zip(events, stored, strict=True):
                if not is_new:
                    existing = conn.execute(Q["runs_of_event"], {"event_id": event.id}).fetchall()
                    accepted.append(AcceptedEvent(event.id, True, tuple(r[0] for r in existing)))
                    continue
                started, skipped = owned[event.id]
                accepted.append(AcceptedEvent(event.id, False, started))
                if not started and skipped:
                    conn.execute(Q["set_disposition"], {"id": event.id, "disposition": skipped})
            for event_id, disposition in resumed.items():
                if not next(a for a in accepted if a.id == event_id).run_ids:
                    conn.execute(Q["set_disposition"], {"id": event_id, "disposition": disposition.value})
        return accepted

    def create_runs(self, runs: Sequence[NewRun], *, now: datetime | None = None) -> list[str | None]:
        at = self._now(now)
        with self._write("create_runs") as conn:
            return [owner for owner, _ in lifecycle.admit_runs(conn, runs, at, event_id=None)]

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
        at = self._now(now)
        only = None if functions is None else orjson.dumps(list(functions)).decode()
        with self._read("claim_runs") as reader:
            if reader.execute(Q["any_ready"], {"now": at, "functions": only}).fetchone() is None:
                return []  # idle: no write lock taken, so idle workers do not queue on SQLite's lock
        token, expires = new_token(), at + micros(lease)
        with self._write("claim_runs") as conn:
            candidates = candidate_rows(
                conn.execute(Q["claim_candidates"], {"now": at, "limit": limit, "functions": only})
            )
            gated = [(c.run_id, c.flags, c.throttle) for c in candidates if c.flags & flow.GATED]
            admitted = flow.admit_to_start(conn, gated, at) if gated else set()
            ids = [c.run_id for c in candidates if not c.flags & flow.GATED or c.run_id in admitted]
            if not ids:
                return []
            params = {
                "worker_id": worker_id,
                "token": token,
                "expires_at": expires,
                "now": at,
                "ids": orjson.dumps(ids),
            }
            rows = claim_rows(conn.execute(Q["claim_runs"], params))
            first_claims = {c.run_id for c in candidates if c.never_started}
            claimed = self._claimed(conn, rows, first_claims, token, expires, at)
        position = {run_id: index for index, run_id in enumerate(ids)}
        claimed.sort(key=lambda c: position[c.run_id])
        return claimed

    @staticmethod
    def _claimed(
        conn: sqlite3.Connection, rows: list[ClaimRow], first_claims: set[str], token: str, expires: int, at: int
    ) -> list[ClaimedRun]:
        """The claimed runs with their events and memoized steps: one query each for the whole batch."""
        event_ids = [row.event_id for row in rows if row.event_id is not None]
        events = {}
        if event_ids:
            for event_id, name, data, ts in conn.execute(Q["events_of"], {"ids": orjson.dumps(event_ids)}):
                events[event_id] = Event(event_id, name, json_or_none(data), moment(ts))
        resumed = [row.run_id for row in rows if row.run_id not in first_claims]  # a first claim has no steps yet
        steps: dict[str, list[Step]] = {}
        if resumed:
            for step_row in conn.execute(Q["steps_of_runs"], {"ids": orjson.dumps(resumed)}):
                steps.setdefault(step_row[0], []).append(step_from_row(step_row[1:], moment_or_none))
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
                steps=tuple(steps.get(row.run_id, ())), events=batch,
            ))  # fmt: skip
        return claimed

    def extend_leases(self, leases: Sequence[Lease], *, lease: timedelta, now: datetime | None = None) -> list[Lease]:
        expires = self._now(now) + micros(lease)
        renewed = []
        with self._write("extend_leases") as conn:
            for held in leases:
                params = {"run_id": held.run_id, "token": held.token, "expires_at": expires}
                if conn.execute(Q["extend_lease"], params).fetchone() is not None:
                    renewed.append(Lease(held.run_id, held.token, moment(expires)))
        return renewed

    def settle_runs(self, settlements: Sequence[Settlement], *, now: datetime | None = None) -> list[str]:
        at = self._now(now)
        with self._write("settle_runs") as conn:
            return [s.lease.run_id for s in settlements if not lifecycle.settle(conn, s, at)]

    def release_runs(self, leases: Sequence[Lease], *, now: datetime | None = None) -> int:
        at = self._now(now)
        with self._write("release_runs") as conn:
            return sum(lifecycle.release(conn, lease, at) for lease in leases)

    def rescue_expired_leases(self, *, now: datetime | None = None, limit: int = 1000) -> int:
        at = self._now(now)
        with self._write("rescue_expired_leases") as conn:
            return lifecycle.rescue(conn, at, limit)

    def cancel_runs(self, run_ids: Sequence[str], *, now: datetime | None = None) -> list[str]:
        at = self._now(now)
        with self._write("cancel_runs") as conn:
            return [run_id for run_id in dict.fromkeys(run_ids) if lifecycle.cancel(conn, run_id, at)]

    def redrive(self, request: RedriveRequest, *, now: datetime | None = None) -> list[str]:
        at = self._now(now)
        with self._write("redrive") as conn:
            return lifecycle.redrive(conn, request, at)

    # steps

    def record_step(self, lease: Lease, step: StepWrite, *, now: datetime | None = None) -> Step:
        at = self._now(now)
        with self._write("record_step") as conn:
            return self._upsert_step(conn, lease, self._resolve_sleep(step, at), at)

    @staticmethod
    def _resolve_sleep(step: StepWrite, at: int) -> StepWrite:
        if step.wake_at is None and step.sleep_for is not None:
            return replace(step, wake_at=moment(at + micros(step.sleep_for)), sleep_for=None)
        return step

    @staticmethod
    def _upsert_step(conn: sqlite3.Connection, lease: Lease, step: StepWrite, at: int) -> Step:
        ended = at if step.status in (StepStatus.COMPLETED, StepStatus.FAILED, StepStatus.ERRORED) else None
        row = conn.execute(
            Q["upsert_step"],
            {"run_id": lease.run_id, "token": lease.token, "id": step.step_id, "position": step.position,
             "kind": step.kind.value, "status": step.status.value, "output": step.output,
             "error": error_bytes(step.error), "wake_at": stamp(step.wake_at), "now": at, "ended_at": ended,
             "started_at": stamp(step.started_at)},
        ).fetchone()  # fmt: skip
        if row is None:
            raise LeaseLost(f"run {lease.run_id}: lease lost; step {step.step_id!r} was not recorded")
        return Step(
            id=step.step_id, kind=step.kind, status=step.status, attempts=row[0], output=json_or_none(step.output),
            error=step.error, started_at=moment_or_none(row[1]), ended_at=moment_or_none(ended), wake_at=step.wake_at,
            position=step.position,
        )  # fmt: skip

    # waiting: events, children, fan-outs

    def register_wait(self, lease: Lease, step: StepWrite, wait: NewWait, *, now: datetime | None = None) -> Step:
        at = self._now(now)
        expires = None if wait.timeout is None else at + micros(wait.timeout)
        write = replace(step, wake_at=moment_or_none(expires), sleep_for=None)
        with self._write("register_wait") as conn:
            written = self._upsert_step(conn, lease, write, at)
            waiting.insert_wait(conn, lease, step.step_id, wait, expires, at)
        return written

    def start_child(self, lease: Lease, step: StepWrite, child: NewChild, *, now: datetime | None = None) -> Step:
        at = self._now(now)
        with self._write("start_child") as conn:
            written = self._upsert_step(conn, lease, self._resolve_sleep(step, at), at)
            waiting.insert_children(conn, lease, step.step_id, [child], at)
        return written

    def time_out_step(
        self, lease: Lease, step_id: str, *, error: ErrorInfo | None, now: datetime | None = None
    ) -> Step:
        at = self._now(now)
        with self._write("time_out_step") as conn:
            row = waiting.time_out(conn, lease, step_id, error, at)
        return step_from_row(row, moment_or_none)

    def open_fan_out(
        self, lease: Lease, step: StepWrite, *, function: str, tolerate: float, now: datetime | None = None
    ) -> Step:
        at = self._now(now)
        params = {
            "parent_id": lease.run_id,
            "step_id": step.step_id,
            "function": function,
            "tolerate": tolerate,
            "now": at,
        }
        with self._write("open_fan_out") as conn:
            written = self._upsert_step(conn, lease, step, at)
            conn.execute(Q["insert_fan_out"], params)
        return written

    def create_children(
        self, lease: Lease, step_id: str, children: Sequence[NewChild], *, now: datetime | None = None
    ) -> int:
        at = self._now(now)
        with self._write("create_children") as conn:
            waiting.check_lease(conn, lease, f"children of step {step_id!r}")
            return waiting.insert_children(conn, lease, step_id, children, at)

    def seal_fan_out(self, lease: Lease, step_id: str, total: int, *, now: datetime | None = None) -> FanOutCounts:
        at = self._now(now)
        with self._write("seal_fan_out") as conn:
            waiting.check_lease(conn, lease, f"the fan-out of step {step_id!r}")
            conn.execute(Q["seal_fan_out"], {"parent_id": lease.run_id, "step_id": step_id, "total": total})
            waiting.finish_fan_out(conn, lease.run_id, step_id, at)
            return waiting.fan_out_counts(conn, lease.run_id, step_id)

    def fan_out_counts(self, parent_id: str, step_id: str) -> FanOutCounts:
        with self._read("fan_out_counts") as conn:
            return waiting.fan_out_counts(conn, parent_id, step_id)

    def fan_out_results(self, parent_id: str, step_id: str, *, after: int, limit: int) -> list[ChildResult]:
        with self._read("fan_out_results") as conn:
            return waiting.fan_out_page(conn, parent_id, step_id, after, limit)

    def wake_finished_fan_outs(self, *, now: datetime | None = None, limit: int = 100) -> int:
        at = self._now(now)
        with self._write("wake_finished_fan_outs") as conn:
            rows = conn.execute(Q["unfinished_fan_outs"], {"limit": limit}).fetchall()
            return sum(waiting.finish_fan_out(conn, parent_id, step_id, at) for parent_id, step_id in rows)

    # flow control: keys and timeouts

    def set_key_paused(self, function: str, key: str, paused: bool, *, now: datetime | None = None) -> None:
        with self._write("set_key_paused") as conn:
            flow.set_paused(conn, function, key, paused)

    def drain_key(self, function: str, key: str, *, now: datetime | None = None) -> list[str]:
        at = self._now(now)
        with self._write("drain_key") as conn:
            pending = [row[0] for row in conn.execute(Q["key_pending"], {"function": function, "key": key})]
            return [run_id for run_id in pending if lifecycle.cancel(conn, run_id, at)]

    def skip_key(self, function: str, key: str, *, now: datetime | None = None) -> str | None:
        with self._write("skip_key") as conn:
            return flow.skip_parked(conn, function, key)

    def fail_overdue_runs(self, *, now: datetime | None = None, limit: int = 1000) -> int:
        at = self._now(now)
        with self._write("fail_overdue_runs") as conn:
            return lifecycle.fail_overdue(conn, at, limit)

    def fire_cron_tick(self, tick: CronTick, *, now: datetime | None = None) -> bool:
        at = self._now(now)
        with self._write("fire_cron_tick") as conn:
            return cron.fire_tick(conn, tick, at, admit_runs=lifecycle.admit_event_runs)

    # reading

    def get_run(self, run_id: str) -> Run | None:
        with self._read("get_run") as conn:
            return reads.get_run(conn, run_id, self._now(None))

    def list_runs(self, query: RunFilter) -> list[Run]:
        with self._read("list_runs") as conn:
            return reads.list_runs(conn, query)

    def get_run_input(self, run_id: str) -> tuple[str, bytes] | None:
        with self._read("get_run_input") as conn:
            return reads.run_input(conn, run_id)

    def get_event(self, event_id: str) -> EventRecord | None:
        with self._read("get_event") as conn:
            return reads.get_event(conn, event_id)

    def list_dead_letters(self, *, function: str | None = None, limit: int = 100) -> list[DeadLetter]:
        with self._read("list_dead_letters") as conn:
            return reads.list_dead_letters(conn, function, limit)

    def queue_stats(self, *, now: datetime | None = None) -> QueueStats:
        with self._read("queue_stats") as conn:
            return reads.queue_stats(conn, self._now(now))

    def subscribe(self, on_work: Callable[[], None]) -> Callable[[], None] | None:
        """Wakes the worker when another connection commits (watch.py), so that a run sent by another
        process starts at once, not at the next poll; sends in the same process wake workers directly."""
        watcher = CommitWatcher(self.path, on_work)
        watcher.start()
        return watcher.stop

    # retention

    def purge(self, retention: Retention, *, now: datetime | None = None) -> PurgeCounts:
        """Batches of `retention.batch` rows, each its own short transaction."""
        at = self._now(now)
        params = {"completed_before": at - micros(retention.completed),
                  "failed_before": at - micros(retention.dead_letters), "batch": retention.batch}  # fmt: skip
        runs = events = 0
        while True:
            with self._write("purge") as conn:
                ids = [row[0] for row in conn.execute(Q["purge_runs"], params).fetchall()]
                for run_id in ids:
                    for name in ("purge_steps", "purge_run_errors", "purge_dead_letter"):
                        conn.execute(Q[name], {"run_id": run_id})
            runs += len(ids)
            if len(ids) < retention.batch:
                break
        while True:
            with self._write("purge") as conn:
                deleted = conn.execute(
                    Q["purge_events"], {"before": params["completed_before"], "batch": retention.batch}
                ).rowcount
            events += deleted
            if deleted < retention.batch:
                break
        return PurgeCounts(runs=runs, events=events)

    # the function registry (store/sqlite/registry.py)

    def register_functions(
        self, app: str, definitions: Sequence[FunctionDefinition], *, now: datetime | None = None
    ) -> RegistryChange:
        with self._write("register_functions") as conn:
            return registry.register(conn, app, definitions, self._now(now))

    def list_functions(self) -> RegistryListing:
        with self._read("list_functions") as conn:
            return registry.listing(conn)

    def set_function_paused(self, function: str, paused: bool, *, now: datetime | None = None) -> datetime | None:
        at = self._now(now)
        with self._write("set_function_paused") as conn:
            return registry.set_paused(conn, function, paused, at)
