"""Admission at ingest on PostgreSQL: what each new event does to the functions it triggers that
have flow control (rate limit, idempotency key, debounce, batch, its place in an ordering key's
line), inside the transaction that stores the event.

SQLite's flow.admit decides run by run with a statement per step. Here a batch of 10,000 ordered
events must not cost 10,000 round trips, and many producers ingest at once: so the rows an ingest
decides on are locked first, each table in key order (the order flow.py documents), read once;
the decisions are made in Python, one run after another in batch order, exactly as SQLite makes
them; and the results are written by a few set-based statements. Rows that did not exist are
locked through placeholders (NULL run or head), which are dropped again if nothing used them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from stepwell.model.records import Disposition
from stepwell.store.base import ConditionCheck, Gathering, NewEvent, NewRun, RunFlow
from stepwell.store.flowrules import flags, gcra, throttle_json
from stepwell.store.postgres import params as p
from stepwell.store.postgres import waiting
from stepwell.store.postgres.flow import arrays, columns
from stepwell.store.postgres.statements import Connection, one, run

# None: the run was inserted; ("folded", run): the event became the pending debounced run's event;
# otherwise (skip reason, the run the event went to, if any) for the event's skip record.
Outcome = tuple[str, str | None] | None
Key = tuple[str, str]
_DAY = timedelta(hours=24)
# The rows an ingest decides on, in lock order: (lock statement, read statement, first key column).
_TABLES = {
    "keys": ("lock_keys", "key_states", "functions"),
    "gates": ("lock_gates", "gate_states", "scopes"),
    "idempotency_keys": ("lock_idempotency_keys", "idempotency_states", "functions"),
    "debounces": ("lock_debounces", "debounce_states", "functions"),
    "batches": ("lock_batches", "batch_states", "functions"),
}


# Cancels runs in the open transaction: (conn, run ids, now) -> (ids cancelled, fan-outs to check after commit).
Cancel = Callable[[Connection, list[str], datetime | None], tuple[list[str], list[tuple[str, str]]]]


def store_events(
    conn: Connection,
    events: Sequence[NewEvent],
    now: datetime | None,
    conditions: ConditionCheck | None,
    cancel: Cancel,
) -> tuple[list[str], dict[str, tuple[str, ...]], list[tuple[str, str]]]:
    """In the caller's transaction: the events and their runs without flow control, the waits they
    resume and the runs they cancel (cancel_on), then the runs they start through flow control.

    Returns the ids of the events that were new, the runs each new event owns, and the fan-outs to
    check after commit. Cancels come before admissions: a transaction locks the runs it ends before
    any ordering key (flow.py), and an event never cancels the runs it starts itself.
    """
    inserted, names, paths, _ = one(conn, "insert_events", p.event_params(events, now, if_no_waits=False))
    fresh = set(inserted)
    new = [event for event in events if event.id in fresh]
    resumed, cancels = waiting.resume_waits(conn, new, names, paths, conditions, now)
    fan_outs: list[tuple[str, str]] = []
    cancelled_by: set[str] = set()
    if cancels:
        cancelled, fan_outs = cancel(conn, list(cancels), now)
        cancelled_by = {cancels[run_id] for run_id in cancelled}
    started = {event.id: tuple(r.id for r in event.runs if r.flow is None) for event in new}
    skipped: dict[str, str] = {}
    pairs = [(r, event.id) for event in new for r in event.runs if r.flow is not None]
    for (r, event_id), outcome in zip(pairs, admit(conn, pairs, now) if pairs else [], strict=True):
        if outcome is None or outcome[0] == "folded":
            started[event_id] += (r.id if outcome is None else str(outcome[1]),)
        else:
            skipped.setdefault(event_id, outcome[0])
    changed = [
        (event.id, disposition)
        for event in new
        if (
            disposition := _disposition(
                bool(started[event.id]), event.id in resumed, event.id in cancelled_by, skipped.get(event.id)
            )
        )
        != (Disposition.STARTED if event.runs else Disposition.NO_MATCH)
    ]
    if changed:
        event_ids, dispositions = columns(changed, 2)
        run(conn, "set_dispositions", {"event_ids": event_ids, "dispositions": dispositions})
    return inserted, started, fan_outs


def _disposition(started: bool, resumed: bool, cancelled: bool, skipped: str | None) -> Disposition:
    if started:
        return Disposition.STARTED
    if resumed:
        return Disposition.RESUMED
    if cancelled:
        return Disposition.CANCELLED
    return Disposition(skipped) if skipped else Disposition.NO_MATCH


def admit(conn: Connection, runs: Sequence[tuple[NewRun, str | None]], now: datetime | None) -> list[Outcome]:
    """Admit (run, event id) pairs, in order, in the caller's transaction; returns each one's outcome.

    A run without an event (direct enqueue, replay) records no skip."""
    plan = _Plan.locked(conn, [r for r, _ in runs], now)
    outcomes = [plan.admit(r, event_id) for r, event_id in runs]
    for (r, event_id), outcome in zip(runs, outcomes, strict=True):
        if outcome is not None and outcome[0] != "folded" and event_id is not None:
            plan.skips.append((event_id, r.function, outcome[0], outcome[1]))
    plan.write(conn)
    return outcomes


@dataclass
class _Line:
    head: str | None
    paused: bool
    parked: bool
    changed: bool = False


@dataclass
class _Pending:
    """A debounced run that has not started: the next event of its key folds into it."""

    run_id: str
    first_at: datetime
    event_id: str | None


@dataclass
class _Batch:
    run_id: str
    size: int
    count: int


@dataclass
class _Plan:
    at: datetime
    lines: dict[Key, _Line]
    tats: dict[Key, datetime]
    idempotency: dict[Key, tuple[str | None, datetime]]
    debounces: dict[Key, _Pending | None]
    batches: dict[Key, _Batch | None]
    gates_changed: set[Key] = field(default_factory=set)
    keys_taken: set[Key] = field(default_factory=set)
    debounces_started: set[Key] = field(default_factory=set)
    batches_changed: set[Key] = field(default_factory=set)
    new_runs: list[tuple[Any, ...]] = field(default_factory=list)
    run_slots: list[tuple[str, str, str, int]] = field(default_factory=list)
    cancel_waits: list[tuple[Any, ...]] = field(default_factory=list)
    batch_events: list[tuple[str, int, str | None]] = field(default_factory=list)  # never None: batches gather events
    pushes: dict[str, tuple[str | None, datetime]] = field(default_factory=dict)
    skips: list[tuple[str, str, str, str | None]] = field(default_factory=list)

    @classmethod
    def locked(cls, conn: Connection, runs: Sequence[NewRun], now: datetime | None) -> _Plan:
        """Lock every row these runs may decide on (tables in order, rows in key order) and read them."""
        flows = [(run.function, run.flow) for run in runs if run.flow is not None]
        wanted = {
            "keys": _keys(flows, lambda f: f.ordering_key),
            "gates": sorted({(f.rate_limit.scope, f.rate_limit.key) for _, f in flows if f.rate_limit}),
            "idempotency_keys": _keys(flows, lambda f: f.idempotency_key),
            "debounces": _keys(flows, lambda f: f.debounce.key if f.debounce else None),
            "batches": _keys(flows, lambda f: f.batch.key if f.batch else None),
        }
        with conn.pipeline():  # one round trip
            moment = run(conn, "flow_now", {"now": now})
            cursors = {}
            for table, keys in wanted.items():
                if keys:
                    lock, state, first = _TABLES[table]
                    params = {first: [a for a, _ in keys], "keys": [b for _, b in keys], "now": now}
                    run(conn, lock, params)
                    cursors[table] = run(conn, state, params)
            at: datetime = moment.fetchall()[0][0]
            read = {table: cursor.fetchall() for table, cursor in cursors.items()}
        return cls(
            at=at,
            lines={(f, k): _Line(head, paused, parked) for f, k, head, paused, parked in read.get("keys", [])},
            tats={(s, k): tat for s, k, tat in read.get("gates", [])},
            idempotency={(f, k): (run_id, expires) for f, k, run_id, expires in read.get("idempotency_keys", [])},
            debounces={key: None for key in wanted["debounces"]}
            | {(f, k): _Pending(r, first, e) for f, k, r, first, e in read.get("debounces", [])},
            batches={key: None for key in wanted["batches"]}
            | {(f, k): _Batch(r, size, count) for f, k, r, size, count in read.get("batches", [])},
        )

    # deciding, run by run, as SQLite's flow.admit does

    def admit(self, run: NewRun, event_id: str | None) -> Outcome:
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
            self.idempotency[key] = (run.id, self.at + _DAY)
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
            self.pushes[open_batch.run_id] = (None, self.at)
        return open_batch.run_id

    def _insert(self, run: NewRun, flow: RunFlow, event_id: str | None) -> None:
        available_at, note = self.at, None
        if flow.debounce is not None:
            available_at, note = self.at + flow.debounce.period, "debounced"
        elif flow.batch is not None and flow.batch.size > 1:
            available_at, note = self.at + flow.batch.period, "batching"
        hold = None if flow.ordering_key is None else self._join_line(run.function, flow.ordering_key, run.id)
        self.new_runs.append(
            (
                run.id,
                run.function,
                event_id,
                run.input,
                run.input_name,
                run.parent_id,
                run.replay_of,
                run.on_failure,
                run.max_attempts,
                run.priority,
                available_at,
                flags(flow),
                hold,
                note,
                flow.ordering_key,
                flow.park_on_dead_letter,
                None if flow.throttle is None else throttle_json(flow.throttle),
                flow.timeout,
            )
        )
        self.run_slots += [(run.id, claim.scope, claim.key, claim.limit) for claim in flow.slots]
        self.cancel_waits += [
            (run.id, f"cancel_on#{index}", w.event_name, w.match_path, w.match_value, w.condition, w.origin)
            for index, w in enumerate(flow.cancel_on)
        ]
        if flow.debounce is not None:
            key = (run.function, flow.debounce.key)
            self.debounces[key] = _Pending(run.id, self.at, event_id)
            self.debounces_started.add(key)
        if flow.batch is not None:
            key = (run.function, flow.batch.key)
            self.batches[key] = _Batch(run.id, flow.batch.size, 1)
            self.batches_changed.add(key)
            self.batch_events.append((run.id, 0, event_id))

    def _join_line(self, function: str, key: str, run_id: str) -> str | None:
        """The hold of a new run of `key`: None if it becomes the head, else it waits its turn."""
        line = self.lines[(function, key)]
        if line.head is None:
            line.head, line.changed = run_id, True
            return "paused" if line.paused else None
        return "paused" if line.paused else "ordering"

    # writing what was decided

    def write(self, conn: Connection) -> None:
        if self.new_runs:
            run(conn, "insert_flow_runs", arrays(_RUN_COLUMNS, self.new_runs, now=self.at))
        if self.run_slots:
            run(conn, "insert_run_slots", arrays(("run_ids", "scopes", "keys", "limits"), self.run_slots))
        if self.cancel_waits:
            names = ("run_ids", "step_ids", "event_names", "match_paths", "match_values", "conditions", "origins")
            run(conn, "insert_cancel_waits", arrays(names, self.cancel_waits, now=self.at))
        lines = [
            (f, k, line.head, line.paused, line.parked)
            for (f, k), line in self.lines.items()
            if line.changed or (line.head is None and not line.paused)  # a placeholder nobody used: dropped
        ]
        if lines:
            run(conn, "save_keys", arrays(("functions", "keys", "heads", "paused", "parked"), lines))
        if self.gates_changed:
            turns = [(s, k, self.tats[(s, k)]) for s, k in sorted(self.gates_changed)]
            run(conn, "save_gates", arrays(("scopes", "keys", "tats"), turns))
        if self.idempotency:
            taken = [
                (*key, *(state if key in self.keys_taken else (None, self.at)))
                for key, state in self.idempotency.items()
            ]
            run(conn, "save_idempotency_keys", arrays(("functions", "keys", "run_ids", "expires"), taken))
        self._write_gathering(conn)
        if self.skips:
            run(conn, "insert_skips", arrays(("event_ids", "functions", "reasons", "run_ids"), self.skips))
            if debounced := sorted({event_id for event_id, _, reason, _ in self.skips if reason == "debounced"}):
                run(conn, "mark_debounced", {"event_ids": debounced})

    def _write_gathering(self, conn: Connection) -> None:
        if self.debounces:
            started = [
                (*key, *((p.run_id, p.first_at) if p and key in self.debounces_started else (None, self.at)))
                for key, p in self.debounces.items()
            ]
            run(conn, "save_debounces", arrays(("functions", "keys", "run_ids", "first_ats"), started))
        if self.batches:
            filled = [
                (*key, *((b.run_id, b.size, b.count) if b and key in self.batches_changed else (None, 0, 0)))
                for key, b in self.batches.items()
            ]
            run(conn, "save_batches", arrays(("functions", "keys", "run_ids", "sizes", "counts"), filled))
        if self.batch_events:
            run(conn, "insert_batch_events", arrays(("run_ids", "seqs", "event_ids"), self.batch_events))
        if self.pushes:
            pushes = [(run_id, event_id, at) for run_id, (event_id, at) in self.pushes.items()]
            run(conn, "push_pending_runs", arrays(("run_ids", "event_ids", "available_ats"), pushes, now=self.at))


_RUN_COLUMNS = (
    "run_ids", "functions", "event_ids", "inputs", "input_names", "parent_ids", "replay_ofs", "on_failures",
    "max_attempts", "priorities", "available_ats", "flows", "holds", "notes", "ordering_keys", "parks", "throttles",
    "timeouts",
)  # fmt: skip


def _keys(flows: Sequence[tuple[str, RunFlow]], key_of: Callable[[RunFlow], str | None]) -> list[Key]:
    """The (function, key) rows these runs need, in lock order."""
    return sorted({(function, key) for function, flow in flows if (key := key_of(flow)) is not None})
