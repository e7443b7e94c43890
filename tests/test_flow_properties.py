"""Property-based: random keys, failures and worker crashes against the store, checked from the history.

Invariants: per ordering key, a run starts only when every earlier run of its key has ended (so
starts follow event order and never overlap); concurrency never exceeds its limits at any instant;
every event's runs reach a terminal status once the queue drains.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from stepwell.app import open_store
from stepwell.clock import VirtualClock
from stepwell.model.ids import new_id
from stepwell.model.records import ErrorInfo, FailureReason, RunStatus
from stepwell.store.base import (
    ClaimedRun,
    Complete,
    Fail,
    NewEvent,
    NewRun,
    Retry,
    RunFilter,
    RunFlow,
    SlotClaim,
)
from tests.conftest import BACKENDS, database_url_for

LEASE = timedelta(seconds=30)
KEYS = ["a", "b", "c"]
USERS = ["u1", "u2"]
GLOBAL_LIMIT, USER_LIMIT = 3, 1


class FlowMachine(RuleBasedStateMachine):
    backend = "sqlite"

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="stepwell-prop-"))
        self.clock = VirtualClock(datetime(2030, 1, 1, tzinfo=UTC))
        self.store = open_store(database_url_for(self.backend, self.tmp), self.clock)
        self.store.migrate()
        self.sent: list[tuple[str, str, str]] = []  # (run id, function, key) in send order
        self.events: list[str] = []
        self.running: dict[str, tuple[str, ClaimedRun]] = {}  # run id -> (worker, claim)
        self.key_of: dict[str, tuple[str, str]] = {}

    def teardown(self) -> None:
        self.store.close()

    def _send(self, function: str, key: str, flow: RunFlow, max_attempts: int) -> None:
        now = self.clock.now()
        run = NewRun(new_id(now), function, max_attempts, flow=flow)
        event = NewEvent(new_id(now), "e", orjson.dumps({"key": key}), None, (run,))
        self.store.append_events([event])
        self.sent.append((run.id, function, key))
        self.events.append(event.id)
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
        for claimed in self.store.claim_runs(worker_id=worker, limit=limit, lease=LEASE):
            assert claimed.run_id not in self.running, "a run was claimed twice"
            self._check_start(claimed.run_id)
            self.running[claimed.run_id] = (worker, claimed)

    def _check_start(self, run_id: str) -> None:
        function, key = self.key_of[run_id]
        if function != "ordered":
            return
        earlier = [rid for rid, fn, k in self.sent if fn == function and k == key]
        for other in earlier[: earlier.index(run_id)]:
            run = self.store.get_run(other)
            assert run is not None and run.status.is_terminal, f"{run_id} started before {other} of key {key} ended"

    @precondition(lambda self: bool(self.running))
    @rule(pick=st.integers(0, 100), outcome=st.sampled_from(["complete", "complete", "retry", "fail"]))
    def finish(self, pick: int, outcome: str) -> None:
        run_id = sorted(self.running)[pick % len(self.running)]
        _, claimed = self.running.pop(run_id)
        error = ErrorInfo("E", "boom")
        settlement = {
            "complete": Complete(claimed.lease, b"1"),
            "retry": Retry(claimed.lease, error, timedelta(seconds=1)),
            "fail": Fail(claimed.lease, error, FailureReason.NON_RETRIABLE),
        }[outcome]
        assert self.store.settle_runs([settlement]) == []

    @precondition(lambda self: bool(self.running))
    @rule(worker=st.sampled_from(["w1", "w2"]))
    def crash(self, worker: str) -> None:
        """The worker dies: its runs stop; their leases expire and the rescuer requeues them."""
        for run_id in [rid for rid, (w, _) in self.running.items() if w == worker]:
            del self.running[run_id]
        self.clock.advance(LEASE + timedelta(seconds=1))
        for _, claimed in self.running.values():  # the living worker's heartbeat keeps its leases
            self.store.extend_leases([claimed.lease], lease=LEASE)
        self.store.rescue_expired_leases()

    @rule(seconds=st.integers(0, 5))
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds=seconds)
        for _, claimed in self.running.values():
            self.store.extend_leases([claimed.lease], lease=LEASE)

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

    def check_everything_ends(self) -> None:
        for _, claimed in list(self.running.values()):
            self.store.settle_runs([Complete(claimed.lease, b"1")])
        self.running.clear()
        for _ in range(500):
            self.clock.advance(seconds=5)
            claimed = self.store.claim_runs(worker_id="drain", limit=50, lease=LEASE)
            if not claimed and self.store.queue_stats().ready + self.store.queue_stats().scheduled == 0:
                break
            for run in claimed:
                self._check_start(run.run_id)
            self.store.settle_runs([Complete(c.lease, b"1") for c in claimed])
        runs = self.store.list_runs(RunFilter(limit=10_000))
        assert all(run.status.is_terminal for run in runs), [
            (r.id, r.status, self.store.get_run(r.id).waiting_reason)
            for r in runs
            if not r.status.is_terminal  # type: ignore[union-attr]
        ]
        for event_id in self.events:
            record = self.store.get_event(event_id)
            assert record is not None and record.run_ids

    @precondition(lambda self: len(self.sent) >= 6)
    @rule()
    def drain_and_check(self) -> None:
        self.check_everything_ends()


_SETTINGS = settings(
    max_examples=25, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
for _backend in BACKENDS:
    _machine = type(f"FlowMachine_{_backend}", (FlowMachine,), {"backend": _backend})
    _case = _machine.TestCase
    _case.settings = _SETTINGS
    globals()[f"TestFlowProperties_{_backend}"] = _case
    del _machine, _case  # pytest collects every TestCase class in the module: keep one name each


def test_statuses_are_the_closed_set() -> None:
    assert {s.value for s in RunStatus} == {
        "queued",
        "running",
        "sleeping",
        "waiting",
        "completed",
        "failed",
        "cancelled",
    }
