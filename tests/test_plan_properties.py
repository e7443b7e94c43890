"""The flow-control properties of test_flow_properties, against the planner alone, in memory.

`PlannedQueue` holds rows in dicts and runs the planner's decisions (store/plan/) exactly as the
stores do: admission at ingest, starts at claim, slots given back and keys handed on when a run
stops, lease rescue. No database, no clock reads: thousands of examples in seconds. The same
properties run against both stores in test_flow_properties.py.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from stepwell.store.base import NewRun, RunFlow, SlotClaim
from stepwell.store.plan import admission, lines, starts
from stepwell.store.plan.failures import ExpiredLease, plan_rescue
from stepwell.store.plan.lines import Line

AT = datetime(2030, 1, 1, tzinfo=UTC)
KEYS = ["a", "b", "c"]
USERS = ["u1", "u2"]
GLOBAL_LIMIT, USER_LIMIT = 3, 1
Key = tuple[str, str]


@dataclass
class Row:
    """A run as a store keeps it, reduced to what flow control reads."""

    function: str
    key: str | None
    max_attempts: int
    seq: int
    slots: tuple[tuple[str, str, int], ...]
    status: str = "queued"
    hold: str | None = None
    attempt: int = 1
    slots_held: bool = False
    waiting_on: set[str] = field(default_factory=set)


class PlannedQueue:
    """Rows in memory, decisions from the planner."""

    def __init__(self) -> None:
        self.runs: dict[str, Row] = {}
        self.lines: dict[Key, Line] = {}
        self.in_use: dict[Key, int] = {}
        self._seq = itertools.count()

    # ingest: admission.admit over a snapshot of the rows, then its change-set written

    def append(self, run: NewRun) -> None:
        want = admission.wanted([run])
        snapshot = admission.Snapshot(AT, lines={k: Line(**vars(self.lines[k])) for k in want.keys if k in self.lines})
        [outcome], changes = admission.admit(snapshot, [(run, f"event-{run.id}")])
        assert outcome is None  # no rate limit, idempotency, debounce or batch here
        for key, line in changes.lines.items():
            if line.changed:
                self.lines[key] = Line(line.head, line.paused, line.parked)
        for row in changes.new_runs:
            slots = tuple((s, k, n) for r, s, k, n in changes.run_slots if r == row.run.id)
            self.runs[row.run.id] = Row(
                row.run.function, row.flow.ordering_key, row.run.max_attempts, next(self._seq), slots, hold=row.hold
            )

    # claim: ready runs in order; those with slots go through starts.plan_starts

    def claim(self, limit: int) -> list[str]:
        ready = sorted((r.seq, run_id) for run_id, r in self.runs.items() if r.status == "queued" and r.hold is None)
        picked = [run_id for _, run_id in ready[:limit]]
        candidates = [starts.Candidate(run_id, self.runs[run_id].slots) for run_id in picked if self.runs[run_id].slots]
        decided = starts.plan_starts(candidates, dict(self.in_use), {}, AT)
        self.in_use.update(decided.slots)
        for run_id, scope in decided.held:
            self.runs[run_id].hold = "concurrency"
            self.runs[run_id].waiting_on.add(scope)
        admitted = set(decided.admitted)
        claimed = [run_id for run_id in picked if not self.runs[run_id].slots or run_id in admitted]
        for run_id in claimed:
            row = self.runs[run_id]
            row.status, row.slots_held = "running", bool(row.slots)
        return claimed

    # leaving: slots back (starts.plan_release), keys on (lines.head_ended)

    def _give_slots(self, row: Row) -> None:
        slots = [(scope, key) for scope, key, _ in row.slots]
        for slot in slots:
            self.in_use[slot] = max(self.in_use.get(slot, 0) - 1, 0)
        waiters = {slot: self._first_waiter(slot) for slot in slots}
        for waiter, scope in starts.plan_release(slots, waiters).released:
            self.runs[waiter].waiting_on.discard(scope)
            self.runs[waiter].hold = None
        row.slots_held = False

    def _first_waiter(self, slot: Key) -> str | None:
        scope, key = slot
        waiting = [
            (r.seq, run_id)
            for run_id, r in self.runs.items()
            if scope in r.waiting_on and any(s == scope and k == key for s, k, _ in r.slots)
        ]
        return min(waiting)[1] if waiting else None

    def retry(self, run_id: str) -> None:
        row = self.runs[run_id]
        row.status, row.attempt = "queued", row.attempt + 1
        if row.slots_held:
            self._give_slots(row)

    def end(self, run_id: str, *, failed: bool) -> None:
        row = self.runs[run_id]
        row.status = "failed" if failed else "completed"
        if row.slots_held:
            self._give_slots(row)
        row.waiting_on.clear()
        if row.key is None:
            return
        key = (row.function, row.key)
        line = self.lines.get(key)
        if line is None or not lines.is_head(line, run_id):
            return
        change = lines.head_ended(line, run_id, failed=failed, park=False, next_run=self._next_in_line(key))
        for waiter, hold in change.holds:
            self.runs[waiter].hold = hold
        if change.drop:
            self.lines.pop(key, None)
        elif change.line is not None:
            self.lines[key] = change.line

    def _next_in_line(self, key: Key) -> str | None:
        waiting = [
            (r.seq, run_id)
            for run_id, r in self.runs.items()
            if (r.function, r.key) == key and r.hold in ("ordering", "paused")
        ]
        return min(waiting)[1] if waiting else None

    def rescue(self, run_ids: list[str]) -> None:
        expired = [ExpiredLease(r, "token", self.runs[r].attempt, self.runs[r].max_attempts) for r in run_ids]
        for rescued in plan_rescue(expired):
            if rescued.dead:
                self.end(rescued.lease.run_id, failed=True)
            else:
                self.retry(rescued.lease.run_id)


class PlanMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.queue = PlannedQueue()
        self.sent: list[tuple[str, str, str]] = []  # (run id, function, key) in send order
        self.running: dict[str, str] = {}  # run id -> worker
        self.key_of: dict[str, tuple[str, str]] = {}
        self._ids = itertools.count()

    def _send(self, function: str, key: str, flow: RunFlow, max_attempts: int) -> None:
        run = NewRun(f"run-{next(self._ids):06d}", function, max_attempts, flow=flow)
        self.queue.append(run)
        self.sent.append((run.id, function, key))
        self.key_of[run.id] = (function, key)

    @rule(key=st.sampled_from(KEYS))
    def send_ordered(self, key: str) -> None:
        self._send("ordered", key, RunFlow(ordering_key=key), max_attempts=2)

    @rule(user=st.sampled_from(USERS))
    def send_limited(self, user: str) -> None:
        slots = (SlotClaim("limited#c0", "*", GLOBAL_LIMIT), SlotClaim("limited#c1", user, USER_LIMIT))
        self._send("limited", user, RunFlow(slots=slots), max_attempts=2)

    @rule(worker=st.sampled_from(["w1", "w2"]), limit=st.integers(1, 4))
    def claim(self, worker: str, limit: int) -> None:
        for run_id in self.queue.claim(limit):
            assert run_id not in self.running, "a run was claimed twice"
            self._check_start(run_id)
            self.running[run_id] = worker

    def _check_start(self, run_id: str) -> None:
        function, key = self.key_of[run_id]
        if function != "ordered":
            return
        earlier = [rid for rid, fn, k in self.sent if fn == function and k == key]
        for other in earlier[: earlier.index(run_id)]:
            status = self.queue.runs[other].status
            assert status in ("completed", "failed"), f"{run_id} started before {other} of key {key} ended"

    @precondition(lambda self: bool(self.running))
    @rule(pick=st.integers(0, 100), outcome=st.sampled_from(["complete", "complete", "retry", "fail"]))
    def finish(self, pick: int, outcome: str) -> None:
        run_id = sorted(self.running)[pick % len(self.running)]
        del self.running[run_id]
        if outcome == "retry":
            self.queue.retry(run_id)
        else:
            self.queue.end(run_id, failed=outcome == "fail")

    @precondition(lambda self: bool(self.running))
    @rule(worker=st.sampled_from(["w1", "w2"]))
    def crash(self, worker: str) -> None:
        lost = sorted(run_id for run_id, w in self.running.items() if w == worker)
        for run_id in lost:
            del self.running[run_id]
        self.queue.rescue(lost)

    @invariant()
    def concurrency_within_limits(self) -> None:
        limited = [self.key_of[rid][1] for rid in self.running if self.key_of[rid][0] == "limited"]
        assert len(limited) <= GLOBAL_LIMIT
        for user in USERS:
            assert limited.count(user) <= USER_LIMIT

    @invariant()
    def one_running_run_per_key(self) -> None:
        keys = [self.key_of[rid][1] for rid in self.running if self.key_of[rid][0] == "ordered"]
        assert len(keys) == len(set(keys))

    @invariant()
    def slots_in_use_match_the_runs_holding_them(self) -> None:
        for (scope, key), n in self.queue.in_use.items():
            holders = [r for r in self.queue.runs.values() if r.slots_held and (scope, key) in {s[:2] for s in r.slots}]
            assert n == len(holders), (scope, key, n, len(holders))

    @precondition(lambda self: len(self.sent) >= 6)
    @rule()
    def drain_and_check(self) -> None:
        for run_id in list(self.running):
            self.queue.end(run_id, failed=False)
        self.running.clear()
        for _ in range(1000):
            claimed = self.queue.claim(50)
            if not claimed:
                break
            for run_id in claimed:
                self._check_start(run_id)
                self.queue.end(run_id, failed=False)
        stuck = {run_id: (r.status, r.hold) for run_id, r in self.queue.runs.items() if r.status == "queued"}
        assert not stuck, stuck
        assert not self.queue.lines, self.queue.lines  # a key with nobody in line has no row


TestPlanProperties = PlanMachine.TestCase
TestPlanProperties.settings = settings(
    max_examples=400, stateful_step_count=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
