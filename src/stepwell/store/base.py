"""The Store protocol: every persistence verb the engine needs, each one transaction.

The protocol is synchronous on purpose: both drivers (sqlite3, psycopg) are fastest in their
blocking form, the public API is mostly called from plain threads, and the async runtime
reaches the store through one executor. No sync/async twins.

Times passed as `now` pin the clock for tests; when `now` is None the store uses its own
authority (the database's clock on PostgreSQL, the injected clock on SQLite).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from stepwell.errors import ConfigurationError
from stepwell.model.apikeys import ApiKey, NewApiKey, StoredApiKey
from stepwell.model.audit import AuditEntry, NewAuditEntry
from stepwell.model.definition import FunctionDefinition
from stepwell.model.payload import PayloadFilter
from stepwell.model.records import (
    ChildResult,
    DeadLetter,
    ErrorInfo,
    Event,
    EventRecord,
    FailureReason,
    FanOutCounts,
    Run,
    RunStatus,
    Step,
    StepKind,
    StepStatus,
)


@dataclass(frozen=True, slots=True)
class Gate:
    """A rate over a scope and key: `limit` per `period`, up to `burst` at once (throttle, rate limit)."""

    scope: str
    key: str
    limit: int
    period: timedelta
    burst: int


@dataclass(frozen=True, slots=True)
class SlotClaim:
    """One concurrency limit a run must get a slot of before it starts."""

    scope: str
    key: str
    limit: int


@dataclass(frozen=True, slots=True)
class Gathering:
    """Debounce (fold events into one pending run) or batch (collect up to `size` events into one run)."""

    key: str
    period: timedelta  # debounce: the quiet period; batch: how long the first event may wait
    max_wait: timedelta | None = None  # debounce only
    size: int = 0  # batch only


@dataclass(frozen=True, slots=True)
class RunFlow:
    """A run's flow control, with every key already evaluated from its event."""

    ordering_key: str | None = None
    park_on_dead_letter: bool = False
    slots: tuple[SlotClaim, ...] = ()
    throttle: Gate | None = None
    rate_limit: Gate | None = None
    debounce: Gathering | None = None
    batch: Gathering | None = None
    idempotency_key: str | None = None
    timeout: timedelta | None = None
    cancel_on: tuple[NewWait, ...] = ()


@dataclass(frozen=True, slots=True)
class NewRun:
    id: str
    function: str
    max_attempts: int
    on_failure: str | None = None
    input: bytes | None = None  # JSON; for runs without an event (direct enqueue, failure handlers)
    input_name: str | None = None  # the event name user code sees for such runs
    parent_id: str | None = None
    replay_of: str | None = None
    priority: int = 0
    flow: RunFlow | None = None


@dataclass(frozen=True, slots=True)
class NewChild:
    """A child run created by a step of a parent run (invoke, fan-out); its id is deterministic."""

    run: NewRun
    index: int | None  # the item's position in a fan-out; None for invoke


@dataclass(frozen=True, slots=True)
class NewWait:
    """What a waiting step matches: events named `event_name` whose value at `match_path` equals
    `match_value` (canonical JSON of the waiting run's own value there), and whose CEL `condition`
    over `event` (the waiting run's event, `origin`) and `async` (the new event) holds."""

    event_name: str
    match_path: str | None
    match_value: str | None
    condition: str | None
    origin: bytes
    timeout: timedelta | None


# Evaluates a wait's CEL condition: (condition, origin event JSON, incoming event JSON) -> matches.
ConditionCheck = Callable[[str, Any, Any], bool]


@dataclass(frozen=True, slots=True)
class NewEvent:
    id: str
    name: str
    data: bytes  # JSON
    ts: datetime | None
    runs: tuple[NewRun, ...]  # the runs this event starts, decided by the dispatcher
    trace: TraceContext | None = None  # the producer's W3C context, stored with the event (its runs inherit it)


@dataclass(frozen=True, slots=True)
class AcceptedEvent:
    id: str
    duplicate: bool  # an event with this id was already stored: nothing new was written
    run_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Lease:
    """A claim on a run; every write under it is checked against `token` (fencing)."""

    run_id: str
    token: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class ClaimedRun:
    lease: Lease
    function: str
    attempt: int
    max_attempts: int
    event: Event
    claimed_at: datetime  # the store's now at claim: sleeps that ended by then are over
    steps: tuple[Step, ...] = ()
    events: tuple[Event, ...] = ()  # a batch run's events (ctx.events); otherwise just `event`
    ready_at: datetime | None = None  # when the run became claimable (schedule-to-start latency); None: unknown
    trace: TraceContext | None = None  # its W3C context (its own, else its event's), as run_telemetry reads it

    @property
    def run_id(self) -> str:
        return self.lease.run_id


@dataclass(frozen=True, slots=True)
class StepWrite:
    """A step's new state, written under the run's lease."""

    step_id: str
    position: int
    kind: StepKind
    status: StepStatus
    output: bytes | None = None
    error: ErrorInfo | None = None
    wake_at: datetime | None = None
    sleep_for: timedelta | None = None  # a sleep measured from the store's now; resolved into wake_at
    started_at: datetime | None = None  # when the attempt at this step began (default: when it is written)


# Settling a claimed run: one of these per run, many per transaction.


@dataclass(frozen=True, slots=True)
class Complete:
    lease: Lease
    output: bytes


@dataclass(frozen=True, slots=True)
class Retry:
    lease: Lease
    error: ErrorInfo
    delay: timedelta


@dataclass(frozen=True, slots=True)
class Suspend:
    """Sleep until `until`, or (waiting=True) wait to be woken, with `until` as the timeout (None: none)."""

    lease: Lease
    until: datetime | None
    waiting: bool = False


@dataclass(frozen=True, slots=True)
class Fail:
    lease: Lease
    error: ErrorInfo
    reason: FailureReason


@dataclass(frozen=True, slots=True)
class Release:
    """Give the run back at once without counting an attempt: the attempt was interrupted by the store."""

    lease: Lease


Settlement = Complete | Retry | Suspend | Fail | Release


@dataclass(frozen=True, slots=True)
class SettledAndClaimed:
    """What `settle_and_claim` did: the outcomes refused (their lease was lost), and the runs claimed."""

    refused: list[str]
    claimed: list[ClaimedRun]


@dataclass(frozen=True, slots=True)
class RunFilter:
    event_id: str | None = None
    function: str | None = None
    status: RunStatus | None = None
    parent_id: str | None = None
    limit: int = 100
    ordering_key: str | None = None
    created_after: datetime | None = None  # created at or after
    created_before: datetime | None = None  # created strictly before
    page_after: tuple[datetime, str] | None = None  # (created_at, id) of the previous page's last run


@dataclass(frozen=True, slots=True)
class Retention:
    completed: timedelta = timedelta(days=7)
    dead_letters: timedelta = timedelta(days=30)
    batch: int = 1000


@dataclass(frozen=True, slots=True)
class PurgeCounts:
    runs: int = 0
    events: int = 0


@dataclass(frozen=True, slots=True)
class RedriveRequest:
    run_ids: Sequence[str] = ()
    function: str | None = None
    since: datetime | None = None
    limit: int = 10_000
    parent_id: str | None = None  # redrive a fan-out: its failed children, and the parent if it failed


@dataclass(frozen=True, slots=True)
class QueueStats:
    ready: int
    scheduled: int
    running: int
    dead_letters: int
    next_due: datetime | None = field(default=None)  # when the earliest scheduled run comes due (after now)


@dataclass(frozen=True, slots=True)
class CronTick:
    """One tick of a function's cron schedule, with the event (and its run) that it starts."""

    function: str
    schedule: str  # the schedule's identity ('0 3 * * * Europe/Paris'); a changed schedule starts afresh
    tick_at: datetime
    event: NewEvent  # a 'stepwell/cron' event with an id derived from function and tick
    forget_before: datetime  # tick rows of this function older than this are dropped


@dataclass(frozen=True, slots=True)
class RegisteredFunction:
    """A row of the function registry: one function of one app, its current definition and since when."""

    app: str
    name: str
    version: str  # FunctionDefinition.version of `definition`
    definition: bytes  # the definition's canonical JSON document
    registered_at: datetime  # first registered
    updated_at: datetime  # the current version's registration (or the retirement)
    retired_at: datetime | None = None  # set when the app re-registered without it (or another app took the name)
    paused_at: datetime | None = None  # set while the function is paused (set_function_paused), by name


@dataclass(frozen=True, slots=True)
class RegistryListing:
    """The whole registry at one `generation` (a counter bumped by every registration that changed it)."""

    generation: int
    functions: tuple[RegisteredFunction, ...]


@dataclass(frozen=True, slots=True)
class RegistryChange:
    """What one registration changed: names added, changed (a new version), retired, and taken from another app."""

    generation: int
    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    retired: tuple[str, ...] = ()
    moved: tuple[tuple[str, str], ...] = ()  # (function, the app that served it before)

    @property
    def changed_anything(self) -> bool:
        return bool(self.added or self.changed or self.retired or self.moved)


class Store(Protocol):
    """Every method is one transaction, safe to call from any thread."""

    def migrate(self) -> list[int]:
        """Create or upgrade the schema; safe when several processes start at once. Returns applied versions."""
        ...

    def applied_migrations(self) -> list[int]:
        """The schema versions applied, oldest first; [] when the database has no Stepwell schema.

        Creates nothing: read-only tools check it before they read. An unreachable database raises
        StoreUnavailable at once, with the driver's reason.
        """
        ...

    def close(self) -> None: ...

    def now(self) -> datetime:
        """The store's authority for time."""
        ...

    def append_events(
        self,
        events: Sequence[NewEvent],
        *,
        now: datetime | None = None,
        conditions: ConditionCheck | None = None,
        registry_generation: int | None = None,
    ) -> list[AcceptedEvent]:
        """Store events, the runs they start, and resume the waits they match, all in one transaction.

        `registry_generation`: the registry generation the runs were decided from (see register_functions);
        when given, the transaction first checks it (under the registry's shared lock on PostgreSQL) and
        raises RegistryChanged, writing nothing, when a registration changed the registry since.

        A known event id is a no-op. Waits are matched through their index; `conditions` evaluates
        the CEL condition of the candidates that have one. (Writing inside the caller's own
        transaction is `TransactionalEnqueue.append_events_in`, on stores that can.)
        """
        ...

    def create_runs(self, runs: Sequence[NewRun], *, now: datetime | None = None) -> list[str | None]:
        """Queue runs that no event started (direct enqueue, replay) through their flow control.
        Returns, per run, the run that does its work: itself, the run holding its idempotency key,
        or None when its rate limit dropped it."""
        ...

    def claim_runs(
        self,
        *,
        worker_id: str,
        limit: int,
        lease: timedelta,
        now: datetime | None = None,
        functions: Sequence[str] | None = None,
    ) -> list[ClaimedRun]:
        """Lease up to `limit` ready runs, with their event and memoized steps. `functions`: only runs of
        these functions (a worker claims what its app serves; other apps' runs in the database are left)."""
        ...

    def extend_leases(self, leases: Sequence[Lease], *, lease: timedelta, now: datetime | None = None) -> list[Lease]:
        """Heartbeat: push the expiry of each lease still held; returns the renewed leases (lost ones are absent)."""
        ...

    def record_step(self, lease: Lease, step: StepWrite, *, now: datetime | None = None) -> Step:
        """Write a step's state under the lease; raises LeaseLost if the lease is gone."""
        ...

    def register_wait(self, lease: Lease, step: StepWrite, wait: NewWait, *, now: datetime | None = None) -> Step:
        """Record a waiting step (wake_at = its timeout) and its matcher; fenced; a second call is a no-op."""
        ...

    def start_child(self, lease: Lease, step: StepWrite, child: NewChild, *, now: datetime | None = None) -> Step:
        """Record an invoke step (waiting) and create its child run once; fenced."""
        ...

    def time_out_step(
        self, lease: Lease, step_id: str, *, error: ErrorInfo | None, now: datetime | None = None
    ) -> Step:
        """End a waiting step at its timeout: complete it with no output (error=None) or fail it with `error`,
        drop its matcher and cancel its child. If it was resolved meanwhile, return it as resolved."""
        ...

    def open_fan_out(
        self, lease: Lease, step: StepWrite, *, function: str, tolerate: float, now: datetime | None = None
    ) -> Step:
        """Record a fan-out step (waiting) and its job set; fenced; idempotent."""
        ...

    def create_children(
        self, lease: Lease, step_id: str, children: Sequence[NewChild], *, now: datetime | None = None
    ) -> int:
        """Create a chunk of the leased run step's children; existing ones are skipped. Returns how many were new."""
        ...

    def seal_fan_out(self, lease: Lease, step_id: str, total: int, *, now: datetime | None = None) -> FanOutCounts:
        """Every child exists: record the total; if they have all finished already, mark the fan-out done."""
        ...

    def fan_out_counts(self, parent_id: str, step_id: str) -> FanOutCounts:
        """Children by status, counted from their rows."""
        ...

    def fan_out_results(self, parent_id: str, step_id: str, *, after: int, limit: int) -> list[ChildResult]:
        """A page of children in item order, from index `after` + 1."""
        ...

    def wake_finished_fan_outs(self, *, now: datetime | None = None, limit: int = 100) -> int:
        """Safety net: mark done (and wake the parent of) sealed fan-outs whose children have all finished."""
        ...

    def set_key_paused(self, function: str, key: str, paused: bool, *, now: datetime | None = None) -> None:
        """Pause (or resume) one ordering key: its queued runs do not start; a run already in progress carries on."""
        ...

    def drain_key(self, function: str, key: str, *, now: datetime | None = None) -> list[str]:
        """Cancel every run of the key that has not started yet; returns their ids."""
        ...

    def skip_key(self, function: str, key: str, *, now: datetime | None = None) -> str | None:
        """Move a parked key past its dead letter: returns the run that now holds the key ('' if none), or None
        when the key was not parked."""
        ...

    def fail_overdue_runs(self, *, now: datetime | None = None, limit: int = 1000) -> int:
        """Fail (dead-letter, reason timed_out) runs past their whole-run timeout; a running attempt is fenced."""
        ...

    def settle_runs(self, settlements: Sequence[Settlement], *, now: datetime | None = None) -> list[str]:
        """Apply outcomes of many runs in one transaction; returns the run ids whose lease was lost."""
        ...

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
        """settle_runs, then claim_runs, in one transaction: a worker that saves outcomes and has room for
        more work pays one commit for both. The claim sees the settle's writes (a run retried at once may
        come back). Where a claim must first admit runs under flow control, a backend may commit the
        settle and claim in a transaction of its own (PostgreSQL does: see its claims.py)."""
        ...

    def release_runs(self, leases: Sequence[Lease], *, now: datetime | None = None) -> int:
        """Give leases back at once (graceful shutdown) without counting an attempt."""
        ...

    def rescue_expired_leases(self, *, now: datetime | None = None, limit: int = 1000) -> int:
        """Requeue (or dead-letter, when out of attempts) runs whose lease expired."""
        ...

    def cancel_runs(self, run_ids: Sequence[str], *, now: datetime | None = None) -> list[str]:
        """Cancel runs not yet terminal; returns those cancelled."""
        ...

    def redrive(self, request: RedriveRequest, *, now: datetime | None = None) -> list[str]:
        """Queue dead-lettered runs again from their failed step; an entry already redriven is skipped."""
        ...

    def get_run(self, run_id: str) -> Run | None: ...

    def list_runs(self, query: RunFilter) -> list[Run]: ...

    def get_run_input(self, run_id: str) -> tuple[str, bytes] | None:
        """The (event name, JSON data) a run started from, for replays; None for an unknown run, or one
        created with neither an event nor an input of its own."""
        ...

    def get_event(self, event_id: str) -> EventRecord | None: ...

    def list_dead_letters(self, *, function: str | None = None, limit: int = 100) -> list[DeadLetter]: ...

    def purge(self, retention: Retention, *, now: datetime | None = None) -> PurgeCounts:
        """Delete terminal runs (and orphaned events) older than their retention, in batches."""
        ...

    def queue_stats(self, *, now: datetime | None = None) -> QueueStats: ...

    def subscribe(self, on_work: Callable[[], None]) -> Callable[[], None] | None:
        """Call `on_work` (from any thread) when new work may be ready: a hint, never a guarantee.

        Returns a function that unsubscribes, or None when the store has no push notifications
        (workers then rely on polling alone). It returns once the notifications are live (or after
        a few seconds, when they cannot be set up yet): a worker subscribes before its first claim,
        so that nothing committed between that claim and the subscription waits for a poll.
        """
        ...

    def fire_cron_tick(self, tick: CronTick, *, now: datetime | None = None) -> bool:
        """Start the run of one cron tick, exactly once however many schedulers ask. One transaction:

        the first call for a (function, schedule) records it as seen since `now`, and a tick at or
        before that never fires (a newly deployed schedule does not run past ticks); a tick at or
        before one this schedule already handled does nothing (ticks only move forward); then the
        tick is claimed through its unique (function, tick_at) row, and the tick's event and run are
        stored as `append_events` stores them. Tick rows before `tick.forget_before` are dropped.
        Returns True when this call fired the tick (its run then meets the function's flow control,
        as any event's run does).
        """
        ...

    def register_functions(
        self, app: str, definitions: Sequence[FunctionDefinition], *, now: datetime | None = None
    ) -> RegistryChange:
        """Write an app's function definitions into the registry. One transaction, idempotent, safe when
        many workers register at once (they serialise on the registry lock; the later ones find nothing
        to change and write nothing). A changed definition replaces the old version and is logged; the
        app's functions missing from `definitions` are retired (with the time); a name that another app
        serves moves to this one (the later registration wins, logged). Every change bumps the
        registry's generation, which `append_events(registry_generation=...)` checks."""
        ...

    def list_functions(self) -> RegistryListing:
        """The registry (served and retired functions) with its generation, read in one snapshot; each row
        with `paused_at` when its function (by name) is paused."""
        ...

    def set_function_paused(self, function: str, paused: bool, *, now: datetime | None = None) -> datetime | None:
        """Pause (or resume) a whole function, by name: while paused, no claim (pull worker or push dispatcher)
        takes its runs, queued or due to resume; a run already in progress carries on, and ingest still creates
        runs (they wait, saying why). Idempotent: pausing a paused function keeps its first `paused_at`.
        Resuming makes its ready runs claimable at once (and wakes workers). Returns `paused_at`, None when
        resumed. Any name is accepted (App checks that the function exists)."""
        ...

    # API keys of the HTTP API (store/*/apikeys.py)

    def create_api_key(self, key: NewApiKey, *, now: datetime | None = None) -> ApiKey:
        """Store a new key (its token's hash only); returns it as listed."""
        ...

    def get_api_key(self, key_id: str) -> StoredApiKey | None:
        """The key with this id and its token hash, revoked or not (None when there is none)."""
        ...

    def list_api_keys(self) -> list[ApiKey]:
        """Every key, revoked ones included, oldest first."""
        ...

    def revoke_api_key(self, key_id: str, *, now: datetime | None = None) -> bool:
        """Revoke a key for good; False when there is no such key or it was revoked already."""
        ...

    # observability (migration 0005): run logs, trace context, telemetry reads

    def append_run_logs(self, lines: Sequence[RunLogLine], *, max_lines: int = 1000) -> int:
        """Store ctx.log lines, many runs in one transaction; a line already stored under its key (a
        replay) is ignored. Past `max_lines` per run the oldest are dropped and counted. Returns how
        many lines were new."""
        ...

    def list_run_logs(self, run_id: str, *, limit: int = 1000) -> RunLogs:
        """A run's stored lines in the order they were logged, and how many were dropped."""
        ...

    def resolve_run_prefix(self, prefix: str, *, limit: int = 2) -> list[str]:
        """Run ids that start with `prefix` (at most `limit`, through the primary key): one means unique."""
        ...

    def set_trace_context(
        self, context: TraceContext, *, event_ids: Sequence[str] = (), run_ids: Sequence[str] = ()
    ) -> None:
        """Store the W3C trace context of events and runs (the runs of an event inherit the event's)."""
        ...

    def run_telemetry(self, run_ids: Sequence[str]) -> list[RunTelemetry]:
        """When each run became ready, and the trace context it carries (its own, else its event's)."""
        ...

    def queue_gauges(self, *, now: datetime | None = None, scan_limit: int = 10_000) -> list[FunctionQueue]:
        """Ready runs per function and the oldest ready time, from at most `scan_limit` entries of the
        ready index (never a count over the table): `capped` says the scan stopped at the limit."""
        ...

    def function_activity(self, *, since: datetime, now: datetime | None = None) -> list[FunctionActivity]:
        """Runs completed and failed per function since `since`, and open dead letters (for `stepwell top`)."""
        ...

    # push mode (store/*/push.py)

    def set_push_endpoints(self, app: str, urls: Mapping[str, str], *, now: datetime | None = None) -> None:
        """Replace the push URLs of `app`'s functions with `urls` (name -> URL); its other functions are pulled."""
        ...

    def push_endpoints(self) -> dict[str, str]:
        """Every served (not retired) function that is pushed: name -> URL."""
        ...

    def set_push_circuit(self, url: str, open_until: datetime | None) -> None:
        """Open the dispatcher's circuit for endpoint `url` until `open_until`, or close it (None)."""
        ...

    def push_circuits(self) -> dict[str, datetime]:
        """Open (or lately opened) circuits: endpoint URL -> until when."""
        ...

    # the dashboard (store/*/audit.py)

    def append_audit(self, entry: NewAuditEntry, *, now: datetime | None = None) -> None:
        """Record one operator action (the dashboard's audit log); fields are clipped to bounded lengths."""
        ...

    def list_audit(self, *, limit: int = 100, before: int | None = None) -> list[AuditEntry]:
        """The newest audit entries first; `before`: the id of the last entry of the previous page."""
        ...

    def recent_endings(self, *, status: RunStatus, since: datetime, limit: int) -> list[tuple[str, datetime]]:
        """(function, ended_at) of the newest `limit` runs that ended with `status` since `since`, newest
        first: a bounded sample for throughput and failure rates (never a count over the table)."""
        ...

    def list_recent_events(self, *, limit: int = 50, before: tuple[datetime, str] | None = None) -> list[EventRecord]:
        """The newest events first, without their data or runs (the dashboard's stream); `before`: the
        (received_at, id) of the last event of the previous page."""
        ...

    def search_runs(self, query: RunFilter, payload: PayloadFilter, *, scan_limit: int = 10_000) -> RunSearch:
        """Runs matching `query` whose input has `payload.value` at `payload.path`, newest first: at most
        `query.limit` of them, found among the next `scan_limit` runs matching `query` from its page
        cursor (read through the same index as list_runs), so one call is bounded whatever the table's
        size; `RunSearch.resume_after` continues the scan."""
        ...

    def function_durations(self, *, since: datetime, now: datetime, limit: int = 10_000) -> RunDurations:
        """p50/p95 duration (ended_at minus started_at) and completed/failed counts per function, over
        the newest `limit` runs that ended in [since, now] (read through the (status, ended_at) index)."""
        ...

    def list_fan_outs(
        self, *, limit: int = 50, before: tuple[datetime, str, str] | None = None, count_limit: int = 1000
    ) -> list[FanOutSummary]:
        """Fan-outs newest first; `before`: the (created_at, parent_id, step_id) of the previous page's
        last. Unfinished and failed children are counted up to `count_limit` each (index-only)."""
        ...


@runtime_checkable
class TransactionalEnqueue(Protocol):
    """A store that can write inside the caller's open transaction on their own database connection
    (the outbox pattern; PostgreSQL). It never commits that transaction, so the caller's rollback
    leaves no event and no run. Not part of `Store`: a store that cannot share a transaction simply
    does not have these verbs, and `transactional(store)` says so."""

    def append_events_in(
        self,
        connection: object,
        events: Sequence[NewEvent],
        *,
        now: datetime | None = None,
        conditions: ConditionCheck | None = None,
        registry_generation: int | None = None,
    ) -> list[AcceptedEvent]:
        """`Store.append_events`, inside the caller's transaction on `connection`."""
        ...

    def create_runs_in(
        self, connection: object, runs: Sequence[NewRun], *, now: datetime | None = None
    ) -> list[str | None]:
        """`Store.create_runs`, inside the caller's transaction on `connection`."""
        ...


def transactional(store: Store) -> TransactionalEnqueue:
    """`store` as a TransactionalEnqueue, or ConfigurationError saying which store it takes."""
    if not isinstance(store, TransactionalEnqueue):
        raise ConfigurationError(
            "connection=: transactional enqueue (writing inside your own database transaction) needs the "
            "PostgreSQL store; with SQLite, call send/enqueue without connection= after your commit"
        )
    return store


def error_json(error: ErrorInfo | None) -> dict[str, Any] | None:
    return None if error is None else error.to_json()


# Observability (migration 0005).


@dataclass(frozen=True, slots=True)
class RunLogLine:
    """One line a run logged through ctx.log. (segment, attempt, seq) is its key within the run:

    code outside steps replays identically, so it logs with attempt 0 at the same segment (steps
    called before it) and seq, and a replay's line is the stored one; a step that executes logs
    under its attempt, so a retried step's lines are new lines.
    """

    run_id: str
    segment: int
    attempt: int
    seq: int
    at: datetime
    level: str
    message: str
    step: str | None = None


@dataclass(frozen=True, slots=True)
class RunLogs:
    lines: tuple[RunLogLine, ...]
    dropped: int = 0  # oldest lines dropped past the per-run bound


@dataclass(frozen=True, slots=True)
class TraceContext:
    """A W3C trace context (traceparent, tracestate), as stored with an event or a run."""

    traceparent: str
    tracestate: str = ""
    link: bool = False  # the run starts a new trace linked to this context (a replay) instead of continuing it


@dataclass(frozen=True, slots=True)
class RunTelemetry:
    run_id: str
    ready_at: datetime  # when the run became claimable: the start of its schedule-to-start latency
    trace: TraceContext | None


@dataclass(frozen=True, slots=True)
class FunctionQueue:
    function: str
    ready: int
    oldest_ready_at: datetime | None
    capped: bool = False  # the scan stopped at its limit: at least `ready` runs are ready


@dataclass(frozen=True, slots=True)
class RunSearch:
    """A page of a payload search. `resume_after`: the (created_at, id) the next page starts after
    (the last match when the page is full, else the last run scanned), None when the scan reached the end."""

    runs: list[Run]
    resume_after: tuple[datetime, str] | None
    scanned: int


@dataclass(frozen=True, slots=True)
class FunctionDurations:
    function: str
    completed: int
    failed: int
    p50: float  # seconds, nearest rank
    p95: float

    @property
    def failure_rate(self) -> float:
        return self.failed / max(self.completed + self.failed, 1)


@dataclass(frozen=True, slots=True)
class RunDurations:
    """Per-function figures; `sampled_from` is set when the sample filled up: the figures then cover
    only the runs that ended from that moment on (the newest `limit`), not the whole window."""

    functions: list[FunctionDurations]
    sampled_from: datetime | None


@dataclass(frozen=True, slots=True)
class FanOutSummary:
    parent_id: str
    step_id: str
    function: str
    created_at: datetime
    total: int | None  # None while children are still being created
    tolerate: float
    done: bool
    unfinished: int  # up to the count limit
    failed: int  # up to the count limit
    capped: bool  # one of the counts reached the limit: shown as "N+"

    @property
    def finished(self) -> int | None:
        """Children that ended (completed, failed or cancelled): exact unless capped (then a lower bound)."""
        return None if self.total is None else max(self.total - self.unfinished, 0)


@dataclass(frozen=True, slots=True)
class FunctionActivity:
    function: str
    completed: int = 0
    failed: int = 0
    dead_letters: int = 0
