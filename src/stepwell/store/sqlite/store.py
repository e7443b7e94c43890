"""SQLite store: WAL, one writer connection per process, readers on their own connections.

Several processes may share the file; `BEGIN IMMEDIATE` plus `busy_timeout` serialise
their writers. Times are REAL epoch seconds; `now` comes from the injected clock.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from stepwell.clock import Clock, SystemClock
from stepwell.errors import ConfigurationError, LeaseLost, StoreError, StoreFull, StoreUnavailable
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
    Complete,
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
    Retry,
    RunFilter,
    Settlement,
    StepWrite,
    Suspend,
)
from stepwell.store.failure import failure_handler_input
from stepwell.store.rows import error_bytes, error_or_none, error_required, json_or_none, step_from_row
from stepwell.store.sqlfile import load_migrations
from stepwell.store.sqlite import cron, flow, waiting
from stepwell.store.sqlite.waiting import FOREVER, Q

_Q = Q
_PACKAGE = "stepwell.store.sqlite"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _us(span: timedelta) -> int:
    """A duration in whole microseconds: times are integers so that arithmetic and comparisons are exact."""
    return span // _MICROSECOND


def _ts(when: datetime | None) -> int | None:
    return None if when is None else _us(when - _EPOCH)


def _t(value: float) -> datetime:
    return _EPOCH + timedelta(microseconds=int(value))


def _time(value: float | None) -> datetime | None:
    return None if value is None else _t(value)


class SQLiteStore:
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
        self._pragmas = (
            f"PRAGMA busy_timeout = {int(busy_timeout_ms)}",
            f"PRAGMA synchronous = {synchronous.upper()}",
        )
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._all_connections: list[sqlite3.Connection] = []
        self._writer = self._connect()
        with self._translate("open"):
            self._writer.execute("PRAGMA journal_mode = WAL")
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
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _now(self, now: datetime | None) -> int:
        return _us((now or self.clock.now()) - _EPOCH)

    def now(self) -> datetime:
        return self.clock.now()

    def close(self) -> None:
        for conn in self._all_connections:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        self._all_connections.clear()

    # schema

    def migrate(self) -> list[int]:
        applied: list[int] = []
        with self._write("migrate") as conn:
            conn.execute(_MIGRATIONS_TABLE)
            done = {row[0] for row in conn.execute("SELECT version FROM stepwell_migrations")}
            for version, name, sql in load_migrations(_PACKAGE):
                if version in done:
                    continue
                for statement in _statements(sql):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO stepwell_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (version, name, self._now(None)),
                )
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
        _refuse_connection(connection)
        at = self._now(now)
        accepted: list[AcceptedEvent] = []
        stored: list[bool] = []
        with self._write("append_events") as conn:
            for event in events:
                disposition = Disposition.STARTED if event.runs else Disposition.NO_MATCH
                cursor = conn.execute(
                    _Q["insert_event"],
                    {
                        "id": event.id,
                        "name": event.name,
                        "data": event.data,
                        "ts": _ts(event.ts) if event.ts else at,
                        "now": at,
                        "disposition": disposition.value,
                    },
                )
                stored.append(cursor.rowcount == 1)
                if cursor.rowcount == 0:
                    existing = conn.execute(_Q["runs_of_event"], {"event_id": event.id}).fetchall()
                    accepted.append(AcceptedEvent(event.id, True, tuple(r[0] for r in existing)))
                    continue
                started, skipped = self._admit_runs(conn, event.runs, at, event_id=event.id)
                accepted.append(AcceptedEvent(event.id, False, started))
                if not started and skipped:
                    conn.execute(_Q["set_disposition"], {"id": event.id, "disposition": skipped})
            for event_id in waiting.resume_waits(conn, events, stored, conditions, at, cancel=self._cancel_in):
                if not next(a for a in accepted if a.id == event_id).run_ids:
                    conn.execute(_Q["set_disposition"], {"id": event_id, "disposition": Disposition.RESUMED.value})
        return accepted

    def _admit_runs(
        self, conn: sqlite3.Connection, runs: Sequence[NewRun], at: int, *, event_id: str
    ) -> tuple[tuple[str, ...], str | None]:
        """Insert an event's runs through their flow control; returns (runs it owns, first skip reason)."""
        plain = [run for run in runs if run.flow is None]
        self._insert_runs(conn, plain, at, event_id=event_id)
        started = [run.id for run in plain]
        first_skip = None
        for run in runs:
            if run.flow is None:
                continue
            outcome = flow.admit(conn, run, event_id, at)
            if outcome is None:
                started.append(run.id)
            elif outcome[0] == "folded":
                started.append(str(outcome[1]))
            else:
                flow.record_skip(conn, event_id, run.function, outcome[0], outcome[1])
                first_skip = first_skip or outcome[0]
        return tuple(started), first_skip

    def create_runs(
        self, runs: Sequence[NewRun], *, now: datetime | None = None, connection: object | None = None
    ) -> None:
        _refuse_connection(connection)
        at = self._now(now)
        with self._write("create_runs") as conn:
            self._insert_runs(conn, runs, at, event_id=None)

    @staticmethod
    def _insert_runs(conn: sqlite3.Connection, runs: Sequence[NewRun], at: int, *, event_id: str | None) -> None:
        conn.executemany(
            _Q["insert_run"],
            [
                {
                    "id": r.id,
                    "function": r.function,
                    "event_id": event_id,
                    "input": r.input,
                    "input_name": r.input_name,
                    "parent_id": r.parent_id,
                    "replay_of": r.replay_of,
                    "on_failure": r.on_failure,
                    "max_attempts": r.max_attempts,
                    "priority": r.priority,
                    "now": at,
                }
                for r in runs
            ],
        )

    # the queue

    def claim_runs(
        self, *, worker_id: str, limit: int, lease: timedelta, now: datetime | None = None
    ) -> list[ClaimedRun]:
        at = self._now(now)
        token = new_token()
        expires = at + _us(lease)
        with self._translate("claim_runs"):
            if self._reader().execute(_Q["any_ready"], {"now": at}).fetchone() is None:
                return []  # idle: no write lock taken, so idle workers do not queue on SQLite's lock
        with self._write("claim_runs") as conn:
            candidates = conn.execute(_Q["claim_candidates"], {"now": at, "limit": limit}).fetchall()
            ids = [
                run_id
                for run_id, flags, throttle, _ in candidates
                if not flags & (flow.SLOTS | flow.THROTTLE) or flow.admit_to_start(conn, run_id, flags, throttle, at)
            ]
            first_claims = {run_id for run_id, _, _, never_started in candidates if never_started}
            if not ids:
                return []
            rows = conn.execute(
                _Q["claim_runs"],
                {"worker_id": worker_id, "token": token, "expires_at": expires, "now": at, "ids": orjson.dumps(ids)},
            ).fetchall()
            claimed = self._claimed(conn, rows, first_claims, token, expires, at)
        position = {run_id: index for index, run_id in enumerate(ids)}
        claimed.sort(key=lambda c: position[c.run_id])
        return claimed

    def _claimed(
        self, conn: sqlite3.Connection, rows: list[Any], first_claims: set[str], token: str, expires: int, at: int
    ) -> list[ClaimedRun]:
        """The claimed runs with their events and memoized steps: one query each for the whole batch."""
        event_ids = [row[4] for row in rows if row[4] is not None]
        events = {}
        if event_ids:
            for event_id, name, data, ts in conn.execute(_Q["events_of"], {"ids": orjson.dumps(event_ids)}):
                events[event_id] = Event(event_id, name, json_or_none(data), _t(ts))
        resumed = [row[0] for row in rows if row[0] not in first_claims]  # a first claim has no steps yet
        steps: dict[str, list[Step]] = {}
        if resumed:
            for step_row in conn.execute(_Q["steps_of_runs"], {"ids": orjson.dumps(resumed)}):
                steps.setdefault(step_row[0], []).append(step_from_row(step_row[1:], _time))
        lease_end, claimed_at = _t(expires), _t(at)
        claimed = []
        for run_id, function, attempt, max_attempts, event_id, input_data, input_name, created_at, flags in rows:
            event = events.get(event_id) if event_id is not None else None
            if event is None:
                event = Event(None, input_name or function, json_or_none(input_data), _t(created_at))
            batch: tuple[Event, ...] = (event,)
            if flags & flow.BATCH:
                batch = tuple(
                    Event(event_id_, name, json_or_none(data), _t(ts))
                    for event_id_, name, data, ts in flow.batch_events(conn, run_id)
                )
            claimed.append(
                ClaimedRun(
                    lease=Lease(run_id, token, lease_end),
                    function=function,
                    attempt=attempt,
                    max_attempts=max_attempts,
                    event=event,
                    claimed_at=claimed_at,
                    steps=tuple(steps.get(run_id, ())),
                    events=batch,
                )
            )
        return claimed

    def extend_leases(self, leases: Sequence[Lease], *, lease: timedelta, now: datetime | None = None) -> list[Lease]:
        expires = self._now(now) + _us(lease)
        renewed = []
        with self._write("extend_leases") as conn:
            for held in leases:
                row = conn.execute(
                    _Q["extend_lease"], {"run_id": held.run_id, "token": held.token, "expires_at": expires}
                ).fetchone()
                if row is not None:
                    renewed.append(Lease(held.run_id, held.token, _t(expires)))
        return renewed

    def record_step(self, lease: Lease, step: StepWrite, *, now: datetime | None = None) -> Step:
        at = self._now(now)
        with self._write("record_step") as conn:
            return self._upsert_step(conn, lease, self._resolve_sleep(step, at), at)

    @staticmethod
    def _resolve_sleep(step: StepWrite, at: int) -> StepWrite:
        if step.wake_at is None and step.sleep_for is not None:
            return replace(step, wake_at=_t(at + _us(step.sleep_for)), sleep_for=None)
        return step

    @staticmethod
    def _upsert_step(conn: sqlite3.Connection, lease: Lease, step: StepWrite, at: int) -> Step:
        finished = step.status in (StepStatus.COMPLETED, StepStatus.FAILED, StepStatus.ERRORED)
        ended = at if finished else None
        row = conn.execute(
            _Q["upsert_step"],
            {
                "run_id": lease.run_id,
                "token": lease.token,
                "id": step.step_id,
                "position": step.position,
                "kind": step.kind.value,
                "status": step.status.value,
                "output": step.output,
                "error": error_bytes(step.error),
                "wake_at": _ts(step.wake_at),
                "now": at,
                "ended_at": ended,
                "started_at": _ts(step.started_at),
            },
        ).fetchone()
        if row is None:
            raise LeaseLost(f"run {lease.run_id}: lease lost; step {step.step_id!r} was not recorded")
        return Step(
            id=step.step_id,
            kind=step.kind,
            status=step.status,
            attempts=row[0],
            output=json_or_none(step.output),
            error=step.error,
            started_at=_time(row[1]),
            ended_at=_time(ended),
            wake_at=step.wake_at,
            position=step.position,
        )

    # waiting: events, children, fan-outs

    def register_wait(self, lease: Lease, step: StepWrite, wait: NewWait, *, now: datetime | None = None) -> Step:
        at = self._now(now)
        expires = None if wait.timeout is None else at + _us(wait.timeout)
        write = replace(step, wake_at=None if expires is None else _t(expires), sleep_for=None)
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
        return step_from_row(row, _time)

    def open_fan_out(
        self, lease: Lease, step: StepWrite, *, function: str, tolerate: float, now: datetime | None = None
    ) -> Step:
        at = self._now(now)
        with self._write("open_fan_out") as conn:
            written = self._upsert_step(conn, lease, step, at)
            conn.execute(
                _Q["insert_fan_out"],
                {
                    "parent_id": lease.run_id,
                    "step_id": step.step_id,
                    "function": function,
                    "tolerate": tolerate,
                    "now": at,
                },
            )
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
            conn.execute(_Q["seal_fan_out"], {"parent_id": lease.run_id, "step_id": step_id, "total": total})
            waiting.finish_fan_out(conn, lease.run_id, step_id, at)
            return waiting.fan_out_counts(conn, lease.run_id, step_id)

    def fan_out_counts(self, parent_id: str, step_id: str) -> FanOutCounts:
        with self._translate("fan_out_counts"):
            return waiting.fan_out_counts(self._reader(), parent_id, step_id)

    def fan_out_results(self, parent_id: str, step_id: str, *, after: int, limit: int) -> list[ChildResult]:
        with self._translate("fan_out_results"):
            return waiting.fan_out_page(self._reader(), parent_id, step_id, after, limit)

    def wake_finished_fan_outs(self, *, now: datetime | None = None, limit: int = 100) -> int:
        at = self._now(now)
        with self._write("wake_finished_fan_outs") as conn:
            rows = conn.execute(_Q["unfinished_fan_outs"], {"limit": limit}).fetchall()
            return sum(waiting.finish_fan_out(conn, parent_id, step_id, at) for parent_id, step_id in rows)

    # flow control: keys and timeouts

    def set_key_paused(self, function: str, key: str, paused: bool, *, now: datetime | None = None) -> None:
        with self._write("set_key_paused") as conn:
            flow.set_paused(conn, function, key, paused)

    def drain_key(self, function: str, key: str, *, now: datetime | None = None) -> list[str]:
        at = self._now(now)
        with self._write("drain_key") as conn:
            pending = [row[0] for row in conn.execute(_Q["key_pending"], {"function": function, "key": key})]
            return [run_id for run_id in pending if self._cancel_in(conn, run_id, at)]

    def skip_key(self, function: str, key: str, *, now: datetime | None = None) -> str | None:
        with self._write("skip_key") as conn:
            return flow.skip_parked(conn, function, key)

    def fail_overdue_runs(self, *, now: datetime | None = None, limit: int = 1000) -> int:
        at = self._now(now)
        failed = 0
        with self._write("fail_overdue_runs") as conn:
            for run_id, _, _ in conn.execute(_Q["overdue_runs"], {"now": at, "limit": limit}).fetchall():
                error = ErrorInfo("RunTimeout", "the run did not finish within its timeout")
                row = conn.execute(
                    _Q["fail_run_unleased"], {"run_id": run_id, "now": at, "error": error_bytes(error)}
                ).fetchone()
                if row is not None:
                    self._dead_letter(conn, run_id, row, error, FailureReason.TIMED_OUT, at)
                    failed += 1
        return failed

    def settle_runs(self, settlements: Sequence[Settlement], *, now: datetime | None = None) -> list[str]:
        at = self._now(now)
        lost: list[str] = []
        with self._write("settle_runs") as conn:
            for settlement in settlements:
                if not self._settle(conn, settlement, at):
                    lost.append(settlement.lease.run_id)
        return lost

    def _settle(self, conn: sqlite3.Connection, settlement: Settlement, at: int) -> bool:
        lease = {"run_id": settlement.lease.run_id, "token": settlement.lease.token, "now": at}
        match settlement:
            case Complete(output=output):
                row = conn.execute(_Q["complete_run"], {**lease, "output": output}).fetchone()
                if row is None:
                    return False
                self._finished(conn, settlement.lease.run_id, row[0], at)
                return True
            case Suspend(until=until, waiting=is_waiting):
                status = RunStatus.WAITING if is_waiting else RunStatus.SLEEPING
                params = {**lease, "until": FOREVER if until is None else _ts(until), "status": status.value}
                row = conn.execute(_Q["suspend_run"], params).fetchone()
                if row is None:
                    return False
                flow.left_running(conn, settlement.lease.run_id, row[0])
                return True
            case Retry(error=error, delay=delay):
                row = conn.execute(
                    _Q["retry_run"],
                    {**lease, "error": error_bytes(error), "available_at": at + _us(delay)},
                ).fetchone()
                if row is None:
                    return False
                self._record_error(conn, settlement.lease.run_id, row[0], error, at)
                flow.left_running(conn, settlement.lease.run_id, row[1])
                return True
            case Fail(error=error, reason=reason):
                return self._fail(conn, settlement.lease, error, reason, at)
        raise AssertionError(f"unknown settlement {settlement!r}")

    @staticmethod
    def _finished(conn: sqlite3.Connection, run_id: str, flags: int, at: int, *, failed: bool = False) -> None:
        """Everything a run reaching a terminal status sets in motion, in its own transaction."""
        if flags & ~flow.CHILD:
            flow.finished(conn, run_id, flags, failed=failed)
        if flags & flow.CHILD:
            waiting.child_finished(conn, run_id, at)

    def _cancel_in(self, conn: sqlite3.Connection, run_id: str, at: int) -> bool:
        row = conn.execute(_Q["cancel_run"], {"run_id": run_id, "now": at}).fetchone()
        if row is None:
            return False
        self._finished(conn, run_id, row[1], at)
        return True

    def _fail(self, conn: sqlite3.Connection, lease: Lease, error: ErrorInfo, reason: FailureReason, at: int) -> bool:
        row = conn.execute(
            _Q["fail_run"], {"run_id": lease.run_id, "token": lease.token, "now": at, "error": error_bytes(error)}
        ).fetchone()
        if row is None:
            return False
        self._dead_letter(conn, lease.run_id, row, error, reason, at)
        return True

    def _dead_letter(
        self, conn: sqlite3.Connection, run_id: str, row: Any, error: ErrorInfo, reason: FailureReason, at: int
    ) -> None:
        """After a run failed for good: its error history, the dead letter, the on_failure run, and what follows."""
        function, attempt, on_failure, event_id, input_data, input_name, flags = row
        lease = Lease(run_id, "", _t(at))
        self._record_error(conn, lease.run_id, attempt, error, at)
        conn.execute(
            _Q["upsert_dead_letter"],
            {
                "run_id": lease.run_id,
                "function": function,
                "error": error_bytes(error),
                "reason": reason.value,
                "attempts": attempt,
                "now": at,
            },
        )
        if on_failure:
            event_name, event_data = self._input_of(conn, event_id, input_name, input_data, function)
            handler_run = failure_handler_input(
                run_id=lease.run_id,
                function=function,
                handler=on_failure,
                error=error,
                event_name=event_name,
                event_data=event_data,
                now=_t(at),
            )
            self._insert_runs(conn, [handler_run], at, event_id=None)
        self._finished(conn, run_id, flags, at, failed=True)

    @staticmethod
    def _input_of(
        conn: sqlite3.Connection, event_id: str | None, input_name: str | None, input_data: bytes | None, function: str
    ) -> tuple[str, Any]:
        if event_id is not None:
            name, data, _ = conn.execute(_Q["event_of"], {"id": event_id}).fetchone()
            return name, json_or_none(data)
        return input_name or function, json_or_none(input_data)

    @staticmethod
    def _record_error(conn: sqlite3.Connection, run_id: str, attempt: int, error: ErrorInfo, at: int) -> None:
        conn.execute(
            _Q["record_run_error"], {"run_id": run_id, "attempt": attempt, "error": error_bytes(error), "now": at}
        )

    def release_runs(self, leases: Sequence[Lease], *, now: datetime | None = None) -> int:
        at = self._now(now)
        released = 0
        with self._write("release_runs") as conn:
            for lease in leases:
                row = conn.execute(
                    _Q["release_run"], {"run_id": lease.run_id, "token": lease.token, "now": at}
                ).fetchone()
                if row is not None:
                    flow.left_running(conn, lease.run_id, row[0])
                    released += 1
        return released

    def rescue_expired_leases(self, *, now: datetime | None = None, limit: int = 1000) -> int:
        at = self._now(now)
        with self._write("rescue_expired_leases") as conn:
            expired = conn.execute(_Q["expired_leases"], {"now": at, "limit": limit}).fetchall()
            for run_id, token, attempt, max_attempts in expired:
                error = ErrorInfo(
                    "LeaseExpired",
                    f"the worker running attempt {attempt} stopped renewing its lease (crashed or hung)",
                )
                if attempt >= max_attempts:
                    self._fail(conn, Lease(run_id, token, _t(at)), error, FailureReason.LEASE_LOST, at)
                else:
                    row = conn.execute(
                        _Q["requeue_expired"],
                        {"run_id": run_id, "token": token, "now": at, "error": error_bytes(error)},
                    ).fetchone()
                    self._record_error(conn, run_id, attempt, error, at)
                    if row is not None:
                        flow.left_running(conn, run_id, row[0])
        return len(expired)

    def cancel_runs(self, run_ids: Sequence[str], *, now: datetime | None = None) -> list[str]:
        at = self._now(now)
        with self._write("cancel_runs") as conn:
            return [run_id for run_id in dict.fromkeys(run_ids) if self._cancel_in(conn, run_id, at)]

    def redrive(self, request: RedriveRequest, *, now: datetime | None = None) -> list[str]:
        at = self._now(now)
        redriven: list[str] = []
        with self._write("redrive") as conn:
            if request.parent_id is not None:
                candidates = [
                    row[0] for row in conn.execute(_Q["open_dead_children"], {"parent_id": request.parent_id})
                ]
                candidates += [
                    row[0] for row in conn.execute(_Q["open_dead_letters_by_id"], {"run_id": request.parent_id})
                ]
            elif request.run_ids:
                candidates = [
                    row[0]
                    for run_id in request.run_ids
                    for row in conn.execute(_Q["open_dead_letters_by_id"], {"run_id": run_id}).fetchall()
                ]
            else:
                candidates = [
                    row[0]
                    for row in conn.execute(
                        _Q["open_dead_letters_by_filter"],
                        {"function": request.function, "since": _ts(request.since), "limit": request.limit},
                    )
                ]
            for run_id in dict.fromkeys(candidates):
                if conn.execute(_Q["mark_redriven"], {"run_id": run_id, "now": at}).rowcount != 1:
                    continue
                row = conn.execute(_Q["requeue_redriven"], {"run_id": run_id, "now": at}).fetchone()
                if row is not None and row[0] & flow.ORDERED:
                    flow.rejoin_line(conn, run_id)
                conn.execute(_Q["reopen_failed_fan_outs"], {"run_id": run_id})
                conn.execute(_Q["forget_failed_steps"], {"run_id": run_id})
                redriven.append(run_id)
        return redriven

    # reading

    def get_run(self, run_id: str) -> Run | None:
        conn = self._reader()
        with self._translate("get_run"):
            row = conn.execute(_Q["get_run"], {"id": run_id}).fetchone()
            if row is None:
                return None
            steps = tuple(step_from_row(r, _time) for r in conn.execute(_Q["steps_of_run"], {"run_id": run_id}))
            errors = tuple(
                e for (data,) in conn.execute(_Q["run_errors"], {"run_id": run_id}) if (e := error_or_none(data))
            )
            reason = flow.explain(conn, run_id, self._now(None))
        return replace(_run_from_row(row, steps, errors), waiting_reason=reason)

    def list_runs(self, query: RunFilter) -> list[Run]:
        params = {
            "event_id": query.event_id,
            "function": query.function,
            "status": query.status.value if query.status else None,
            "parent_id": query.parent_id,
            "limit": query.limit,
            "ordering_key": query.ordering_key,
        }
        with self._translate("list_runs"):
            return [_run_from_row(row) for row in self._reader().execute(_Q["list_runs"], params)]

    def get_run_input(self, run_id: str) -> tuple[str, bytes] | None:
        with self._translate("get_run_input"):
            row = self._reader().execute(_Q["run_input"], {"id": run_id}).fetchone()
        return None if row is None else (row[0], row[1])

    def get_event(self, event_id: str) -> EventRecord | None:
        conn = self._reader()
        with self._translate("get_event"):
            row = conn.execute(_Q["get_event"], {"id": event_id}).fetchone()
            if row is None:
                return None
            run_ids = tuple(r[0] for r in conn.execute(_Q["runs_of_event"], {"event_id": event_id}))
            skipped = tuple(tuple(r) for r in conn.execute(_Q["skips_of_event"], {"event_id": event_id}))
        event_id_, name, data, ts, received_at, disposition = row
        return EventRecord(
            event_id_,
            name,
            json_or_none(data),
            _t(ts),
            _t(received_at),
            Disposition(disposition),
            run_ids,
            skipped,  # type: ignore[arg-type]
        )

    def list_dead_letters(self, *, function: str | None = None, limit: int = 100) -> list[DeadLetter]:
        with self._translate("list_dead_letters"):
            rows = self._reader().execute(_Q["list_dead_letters"], {"function": function, "limit": limit}).fetchall()
        return [
            DeadLetter(
                run_id, fn, error_required(error), FailureReason(reason), _t(failed_at), attempts, count, key, policy
            )
            for run_id, fn, error, reason, failed_at, attempts, count, key, policy in rows
        ]

    def purge(self, retention: Retention, *, now: datetime | None = None) -> PurgeCounts:
        at = self._now(now)
        params = {
            "completed_before": at - _us(retention.completed),
            "failed_before": at - _us(retention.dead_letters),
            "batch": retention.batch,
        }
        runs = events = 0
        while True:
            with self._write("purge") as conn:
                ids = [row[0] for row in conn.execute(_Q["purge_runs"], params).fetchall()]
                for run_id in ids:
                    for name in ("purge_steps", "purge_run_errors", "purge_dead_letter"):
                        conn.execute(_Q[name], {"run_id": run_id})
            runs += len(ids)
            if len(ids) < retention.batch:
                break
        while True:
            with self._write("purge") as conn:
                deleted = conn.execute(
                    _Q["purge_events"], {"before": params["completed_before"], "batch": retention.batch}
                ).rowcount
            events += deleted
            if deleted < retention.batch:
                break
        return PurgeCounts(runs=runs, events=events)

    def subscribe(self, on_work: Callable[[], None]) -> Callable[[], None] | None:
        """No push across processes on SQLite: workers poll (sends in the same process wake them directly)."""
        return None

    def queue_stats(self, *, now: datetime | None = None) -> QueueStats:
        with self._translate("queue_stats"):
            ready, scheduled, running, dead, next_due = (
                self._reader().execute(_Q["queue_stats"], {"now": self._now(now), "forever": FOREVER}).fetchone()
            )
        return QueueStats(ready, scheduled, running, dead, _time(next_due))

    def fire_cron_tick(self, tick: CronTick, *, now: datetime | None = None) -> bool:
        at = self._now(now)
        with self._write("fire_cron_tick") as conn:
            return cron.fire_tick(conn, tick, at, admit_runs=self._admit_runs)


def _run_from_row(row: Any, steps: tuple[Step, ...] = (), errors: tuple[ErrorInfo, ...] = ()) -> Run:
    (
        run_id,
        function,
        status,
        attempt,
        max_attempts,
        event_id,
        parent_id,
        created_at,
        started_at,
        ended_at,
        available_at,
        output,
        error,
        replay_of,
        ordering_key,
    ) = row
    return Run(
        id=run_id,
        function=function,
        status=RunStatus(status),
        attempt=attempt,
        max_attempts=max_attempts,
        event_id=event_id,
        parent_id=parent_id,
        created_at=_t(created_at),
        started_at=_time(started_at),
        ended_at=_time(ended_at),
        available_at=_time(available_at),
        output=json_or_none(output),
        ordering_key=ordering_key,
        error=error_or_none(error),
        replay_of=replay_of,
        steps=steps,
        errors=errors,
    )


_MIGRATIONS_TABLE = (
    "CREATE TABLE IF NOT EXISTS stepwell_migrations (version INTEGER PRIMARY KEY, name TEXT, applied_at INTEGER)"
)


def migration_script() -> str:
    """Every migration as one SQL script, with its bookkeeping: what `migrate()` applies to an empty database.

    For teams whose own tool applies schema changes (`stepwell migrate --print-sql`).
    """
    now_us = "CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)"
    parts = ["-- Stepwell schema for SQLite (what `stepwell migrate` applies).", _MIGRATIONS_TABLE + ";"]
    for version, name, script in load_migrations(_PACKAGE):
        # version and name come from our own file names (NNNN_word.sql): nothing to quote.
        record = (
            "INSERT OR IGNORE INTO stepwell_migrations (version, name, applied_at)"
            f" VALUES ({version}, '{name}', {now_us});"
        )
        parts += [f"-- {name}", script.strip(), record]
    return "\n\n".join(parts) + "\n"


def _refuse_connection(connection: object | None) -> None:
    """Transactional enqueue needs the caller's transaction and ours to be one: only PostgreSQL offers that."""
    if connection is not None:
        raise ConfigurationError(
            "connection=: transactional enqueue (writing inside your own database transaction) needs the "
            "PostgreSQL store; with SQLite, call send/enqueue without connection= after your commit"
        )


def _statements(script: str) -> list[str]:
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip() and not all(l.strip().startswith("--") or not l.strip() for l in current.splitlines()):
        raise StoreError(f"migration has an unterminated statement: {current[:200]!r}")
    return statements
