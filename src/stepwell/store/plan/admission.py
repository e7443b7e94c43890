"""Admission at ingest, decided in memory: what each new run with flow control does.

A snapshot holds the rows the runs may decide on (their ordering keys, rate-limit gates,
idempotency keys, pending debounced runs and open batches) at the store's now. The runs are
admitted one after another in the order given (events in batch order, runs in event order),
each decision seeing those before it. The change-set is the snapshot's rows as they end, with
marks on those that changed, plus the rows to insert (runs, their slots and cancel waits, batch
events, skip records) and the pending runs to push. Each backend writes it in its own dialect.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from stepwell.store.base import Gathering, NewRun, NewWait, RunFlow
from stepwell.store.flowrules import flags, gcra, throttle_json
from stepwell.store.plan.lines import Line, join

# None: the run was inserted; ("folded", run): the event became the pending debounced run's event;
# otherwise (skip reason, the run the event went to, if any) for the event's skip record.
Outcome = tuple[str, str | None] | None
Key = tuple[str, str]
IDEMPOTENCY_WINDOW = timedelta(hours=24)


@dataclass
class Pending:
    """A debounced run that has not started: the next event of its key folds into it."""

    run_id: str
    first_at: datetime
    event_id: str | None


@dataclass
class OpenBatch:
    """A batched run that has not started and has room: the next event of its key joins it."""

    run_id: str
    size: int
    count: int


@dataclass(frozen=True, slots=True)
class Wanted:
    """The rows admitting some runs may decide on, per table, each list in key (lock) order."""

    keys: list[Key]
    gates: list[Key]
    idempotency_keys: list[Key]
    debounces: list[Key]
    batches: list[Key]


def wanted(runs: Sequence[NewRun]) -> Wanted:
    flows = [(run.function, run.flow) for run in runs if run.flow is not None]
    return Wanted(
        keys=_keys(flows, lambda f: f.ordering_key),
        gates=sorted({(f.rate_limit.scope, f.rate_limit.key) for _, f in flows if f.rate_limit}),
        idempotency_keys=_keys(flows, lambda f: f.idempotency_key),
        debounces=_keys(flows, lambda f: f.debounce.key if f.debounce else None),
        batches=_keys(flows, lambda f: f.batch.key if f.batch else None),
    )


def _keys(flows: Sequence[tuple[str, RunFlow]], key_of: Callable[[RunFlow], str | None]) -> list[Key]:
    return sorted({(function, key) for function, flow in flows if (key := key_of(flow)) is not None})


@dataclass
class Snapshot:
    """The rows of `Wanted` as read (locked) at `at`; a row that does not exist is simply absent."""

    at: datetime
    lines: dict[Key, Line] = field(default_factory=dict)
    tats: dict[Key, datetime] = field(default_factory=dict)
    idempotency: dict[Key, tuple[str | None, datetime]] = field(default_factory=dict)  # (run, expires_at)
    debounces: dict[Key, Pending] = field(default_factory=dict)
    batches: dict[Key, OpenBatch] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RunRow:
    """A run to insert, with the flow columns admission decided for it."""

    run: NewRun
    event_id: str | None
    available_at: datetime
    flags: int
    hold: str | None
    note: str | None
    throttle: bytes | None

    @property
    def flow(self) -> RunFlow:
        assert self.run.flow is not None
        return self.run.flow


@dataclass
class Admission:
    """The decisions over one snapshot, and what they change (the change-set)."""

    at: datetime
    lines: dict[Key, Line]  # every wanted key, as it ends; `changed` marks the ones to write
    tats: dict[Key, datetime]  # every wanted gate (a missing one starts at `at`)
    idempotency: dict[Key, tuple[str | None, datetime]]  # every wanted key; see keys_taken
    debounces: dict[Key, Pending | None]  # every wanted key; see debounces_started
    batches: dict[Key, OpenBatch | None]  # every wanted key; see batches_changed
    gates_changed: set[Key] = field(default_factory=set)
    keys_taken: set[Key] = field(default_factory=set)
    debounces_started: set[Key] = field(default_factory=set)
    batches_changed: set[Key] = field(default_factory=set)
    new_runs: list[RunRow] = field(default_factory=list)
    run_slots: list[tuple[str, str, str, int]] = field(default_factory=list)  # (run, scope, key, limit)
    cancel_waits: list[tuple[str, str, NewWait]] = field(default_factory=list)  # (run, step id, wait)
    batch_events: list[tuple[str, int, str | None]] = field(default_factory=list)  # (run, seq, event)
    pushes: dict[str, tuple[str | None, datetime]] = field(default_factory=dict)  # run -> (new event, available_at)
    skips: list[tuple[str, str, str, str | None]] = field(default_factory=list)  # (event, function, reason, run)

    @classmethod
    def over(cls, snapshot: Snapshot, want: Wanted) -> Admission:
        at = snapshot.at
        return cls(
            at=at,
            lines={key: snapshot.lines.get(key) or Line() for key in want.keys},
            tats={key: snapshot.tats.get(key, at) for key in want.gates},
            idempotency={key: snapshot.idempotency.get(key, (None, at)) for key in want.idempotency_keys},
            debounces={key: snapshot.debounces.get(key) for key in want.debounces},
            batches={key: snapshot.batches.get(key) for key in want.batches},
        )

    def admit(self, run: NewRun, event_id: str | None) -> Outcome:
        """Insert `run`, or fold its event into a pending run, or skip it; in that order of rules:
        rate limit, idempotency key, debounce or batch, then its place in its key's line."""
        flow = run.flow
        assert flow is not None
        tat = None
        if flow.rate_limit is not None:
            gate = flow.rate_limit
            allowed, _, tat = gcra(gate, self.tats[(gate.scope, gate.key)], self.at)
            if not allowed:
                return ("rate_limited", None)
        if flow.idempotency_key is not None:
            key = (run.function, flow.idempotency_key)
            holder, expires_at = self.idempotency[key]
            if holder is not None and expires_at > self.at:
                return ("deduplicated", holder)
            self.idempotency[key] = (run.id, self.at + IDEMPOTENCY_WINDOW)
            self.keys_taken.add(key)
        if flow.rate_limit is not None and tat is not None:
            self.tats[(flow.rate_limit.scope, flow.rate_limit.key)] = tat
            self.gates_changed.add((flow.rate_limit.scope, flow.rate_limit.key))
        if flow.debounce is not None:
            folded = self._fold(run.function, flow.debounce, event_id)
            if folded is not None:
                return ("folded", folded)
        elif flow.batch is not None:
            batched = self._add_to_batch(run.function, flow.batch, event_id)
            if batched is not None:
                return ("batched", batched)
        self._insert(run, flow, event_id)
        return None

    def _fold(self, function: str, debounce: Gathering, event_id: str | None) -> str | None:
        pending = self.debounces[(function, debounce.key)]
        if pending is None:
            return None
        available_at = self.at + debounce.period
        if debounce.max_wait is not None:
            available_at = min(available_at, pending.first_at + debounce.max_wait)
        if pending.event_id is not None:
            self.skips.append((pending.event_id, function, "debounced", pending.run_id))
        pending.event_id = event_id
        self.pushes[pending.run_id] = (event_id, available_at)
        return pending.run_id

    def _add_to_batch(self, function: str, batch: Gathering, event_id: str | None) -> str | None:
        key = (function, batch.key)
        open_batch = self.batches[key]
        if open_batch is None or open_batch.count >= open_batch.size:
            return None
        self.batch_events.append((open_batch.run_id, open_batch.count, event_id))
        open_batch.count += 1
        self.batches_changed.add(key)
        if open_batch.count >= batch.size:
            self.pushes[open_batch.run_id] = (None, self.at)  # full: it starts now
        return open_batch.run_id

    def _insert(self, run: NewRun, flow: RunFlow, event_id: str | None) -> None:
        available_at, note = self.at, None
        if flow.debounce is not None:
            available_at, note = self.at + flow.debounce.period, "debounced"
        elif flow.batch is not None and flow.batch.size > 1:
            available_at, note = self.at + flow.batch.period, "batching"
        hold = None if flow.ordering_key is None else join(self.lines[(run.function, flow.ordering_key)], run.id)
        throttle = None if flow.throttle is None else throttle_json(flow.throttle)
        self.new_runs.append(RunRow(run, event_id, available_at, flags(flow), hold, note, throttle))
        self.run_slots += [(run.id, claim.scope, claim.key, claim.limit) for claim in flow.slots]
        self.cancel_waits += [(run.id, f"cancel_on#{index}", wait) for index, wait in enumerate(flow.cancel_on)]
        if flow.debounce is not None:
            key = (run.function, flow.debounce.key)
            self.debounces[key] = Pending(run.id, self.at, event_id)
            self.debounces_started.add(key)
        if flow.batch is not None:
            key = (run.function, flow.batch.key)
            self.batches[key] = OpenBatch(run.id, flow.batch.size, 1)
            self.batches_changed.add(key)
            self.batch_events.append((run.id, 0, event_id))


def admit(snapshot: Snapshot, runs: Sequence[tuple[NewRun, str | None]]) -> tuple[list[Outcome], Admission]:
    """Admit (run, event id) pairs in order over `snapshot`: each one's outcome, and the change-set.

    An event whose run was skipped gets a skip record; a run without an event (direct enqueue,
    replay) records none."""
    plan = Admission.over(snapshot, wanted([r for r, _ in runs]))
    outcomes = [plan.admit(r, event_id) for r, event_id in runs]
    for (r, event_id), outcome in zip(runs, outcomes, strict=True):
        if outcome is not None and outcome[0] != "folded" and event_id is not None:
            plan.skips.append((event_id, r.function, outcome[0], outcome[1]))
    return outcomes, plan
