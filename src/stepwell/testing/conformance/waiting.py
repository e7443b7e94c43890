"""Store conformance: waits resumed by events, invoked children, fan-outs. Runs on every backend."""

from __future__ import annotations

import threading
from datetime import timedelta

import orjson
import pytest

from stepwell.clock import VirtualClock
from stepwell.errors import LeaseLost
from stepwell.model.ids import child_run_id
from stepwell.model.records import (
    Disposition,
    ErrorInfo,
    FailureReason,
    FanOutCounts,
    RunStatus,
    StepKind,
    StepStatus,
)
from stepwell.store.base import (
    ClaimedRun,
    Complete,
    Fail,
    Lease,
    NewChild,
    NewRun,
    NewWait,
    RedriveRequest,
    StepWrite,
    Store,
    Suspend,
)
from stepwell.testing.conformance.helpers import event, new_run

LEASE = timedelta(seconds=30)


def _claim_one(store: Store, clock: VirtualClock, data: object = None) -> ClaimedRun:
    now = clock.now()
    store.append_events([event("order.placed", data or {"order": 7}, at=now, runs=(new_run(at=now),))])
    [claimed] = store.claim_runs(worker_id="w", limit=1, lease=LEASE)
    return claimed


def _wait(
    store: Store,
    claimed: ClaimedRun,
    *,
    value: str | None = "7",
    condition: str | None = None,
    timeout: timedelta | None = timedelta(hours=1),
) -> None:
    wait = NewWait("order.paid", "data.order" if value else None, value, condition, b'{"data": {"order": 7}}', timeout)
    step = store.register_wait(claimed.lease, StepWrite("paid", 0, StepKind.WAIT, StepStatus.WAITING), wait)
    assert step.status == StepStatus.WAITING
    store.settle_runs([Suspend(claimed.lease, step.wake_at, waiting=True)])


def test_register_wait_a_matching_event_resumes_a_waiting_run_through_the_index(
    store: Store, clock: VirtualClock
) -> None:
    claimed = _claim_one(store, clock)
    _wait(store, claimed)
    run = store.get_run(claimed.run_id)
    assert run is not None and run.status == RunStatus.WAITING
    assert run.available_at == clock.now() + timedelta(hours=1)
    [miss] = store.append_events([event("order.paid", {"order": 8}, at=clock.now())])
    assert store.claim_runs(worker_id="w", limit=1, lease=LEASE) == []
    [hit] = store.append_events([event("order.paid", {"order": 7, "amount": 3}, at=clock.now())])
    record = store.get_event(hit.id)
    assert record is not None and record.disposition == Disposition.RESUMED
    other = store.get_event(miss.id)
    assert other is not None and other.disposition == Disposition.NO_MATCH
    [again] = store.claim_runs(worker_id="w", limit=1, lease=LEASE)
    [step] = again.steps
    assert step.status == StepStatus.COMPLETED
    assert step.output["data"] == {"order": 7, "amount": 3} and step.output["id"] == hit.id


def test_register_wait_a_condition_is_checked_by_the_callback(store: Store, clock: VirtualClock) -> None:
    claimed = _claim_one(store, clock)
    _wait(store, claimed, value=None, condition="async.data.amount > 10")
    seen: list[tuple[str, object, object]] = []

    def check(condition: str, origin: object, incoming: dict[str, object]) -> bool:
        seen.append((condition, origin, incoming["data"]))
        return incoming["data"]["amount"] > 10  # type: ignore[index, operator, no-any-return]

    store.append_events([event("order.paid", {"amount": 5}, at=clock.now())], conditions=check)
    assert store.claim_runs(worker_id="w", limit=1, lease=LEASE) == []
    store.append_events([event("order.paid", {"amount": 50}, at=clock.now())], conditions=check)
    assert len(store.claim_runs(worker_id="w", limit=1, lease=LEASE)) == 1
    assert seen[0] == ("async.data.amount > 10", {"data": {"order": 7}}, {"amount": 5})


def test_register_wait_an_event_during_the_attempt_that_registered_the_wait_is_not_lost(
    store: Store, clock: VirtualClock
) -> None:
    claimed = _claim_one(store, clock)
    wait = NewWait("order.paid", "data.order", "7", None, b"{}", timedelta(hours=1))
    step = store.register_wait(claimed.lease, StepWrite("paid", 0, StepKind.WAIT, StepStatus.WAITING), wait)
    store.append_events([event("order.paid", {"order": 7}, at=clock.now())])
    store.settle_runs([Suspend(claimed.lease, step.wake_at, waiting=True)])
    assert len(store.claim_runs(worker_id="w", limit=1, lease=LEASE)) == 1, "the run resumes at once"


def test_time_out_step_a_wait_times_out_unless_an_event_got_there_first(store: Store, clock: VirtualClock) -> None:
    claimed = _claim_one(store, clock)
    _wait(store, claimed)
    clock.advance(hours=1)
    [woken] = store.claim_runs(worker_id="w", limit=1, lease=LEASE)
    step = store.time_out_step(woken.lease, "paid", error=None)
    assert (step.status, step.output) == (StepStatus.COMPLETED, None)
    store.append_events([event("order.paid", {"order": 7}, at=clock.now())])
    assert store.time_out_step(woken.lease, "paid", error=None).output is None


def test_start_child_an_invoked_child_resolves_its_parent_step(store: Store, clock: VirtualClock) -> None:
    parent = _claim_one(store, clock)
    child_id = child_run_id(parent.run_id, "call")
    child = NewChild(NewRun(child_id, "child", 1, input=b'{"n": 2}', input_name="stepwell/function.invoked"), None)
    step_write = StepWrite("call", 0, StepKind.INVOKE, StepStatus.WAITING)
    store.start_child(parent.lease, step_write, child)
    store.start_child(parent.lease, step_write, child)
    store.settle_runs([Suspend(parent.lease, None, waiting=True)])
    [claimed_child] = store.claim_runs(worker_id="w", limit=5, lease=LEASE)
    assert claimed_child.run_id == child_id and claimed_child.event.data == {"n": 2}
    store.settle_runs([Complete(claimed_child.lease, b"4")])
    [resumed] = store.claim_runs(worker_id="w", limit=5, lease=LEASE)
    assert resumed.run_id == parent.run_id
    assert [(s.id, s.status, s.output) for s in resumed.steps] == [("call", StepStatus.COMPLETED, 4)]
    [listed] = store.list_runs(
        __import__("stepwell.store.base", fromlist=["RunFilter"]).RunFilter(parent_id=parent.run_id)
    )
    assert listed.id == child_id


def test_start_child_a_failed_child_fails_its_parent_step(store: Store, clock: VirtualClock) -> None:
    parent = _claim_one(store, clock)
    child = NewChild(NewRun(child_run_id(parent.run_id, "call"), "child", 1, input=b"{}"), None)
    store.start_child(parent.lease, StepWrite("call", 0, StepKind.INVOKE, StepStatus.WAITING), child)
    store.settle_runs([Suspend(parent.lease, None, waiting=True)])
    [claimed_child] = store.claim_runs(worker_id="w", limit=5, lease=LEASE)
    store.settle_runs([Fail(claimed_child.lease, ErrorInfo("ValueError", "bad"), FailureReason.NON_RETRIABLE)])
    [resumed] = store.claim_runs(worker_id="w", limit=5, lease=LEASE)
    [step] = resumed.steps
    assert step.status == StepStatus.FAILED and step.error is not None and step.error.message == "bad"


def _fan_out(store: Store, parent: ClaimedRun, count: int) -> list[str]:
    store.open_fan_out(
        parent.lease, StepWrite("all", 0, StepKind.FAN_OUT, StepStatus.WAITING), function="child", tolerate=0
    )
    children = [
        NewChild(NewRun(child_run_id(parent.run_id, "all", i), "child", 1, input=orjson.dumps(i)), i)
        for i in range(count)
    ]
    assert store.create_children(parent.lease, "all", children[: count // 2]) == count // 2
    assert store.create_children(parent.lease, "all", children) == count - count // 2
    counts = store.seal_fan_out(parent.lease, "all", count)
    assert (counts.total, counts.queued, counts.done) == (count, count, False)
    store.settle_runs([Suspend(parent.lease, None, waiting=True)])
    return [c.run.id for c in children]


def _children(parent: ClaimedRun, count: int) -> list[NewChild]:
    return [
        NewChild(NewRun(child_run_id(parent.run_id, "all", i), "child", 1, input=orjson.dumps(i)), i)
        for i in range(count)
    ]


def test_open_fan_out_records_a_waiting_step_and_an_unsealed_fan_out_once(store: Store, clock: VirtualClock) -> None:
    parent = _claim_one(store, clock)
    write = StepWrite("all", 0, StepKind.FAN_OUT, StepStatus.WAITING)
    step = store.open_fan_out(parent.lease, write, function="child", tolerate=0)
    assert (step.id, step.kind, step.status) == ("all", StepKind.FAN_OUT, StepStatus.WAITING)
    store.open_fan_out(parent.lease, write, function="child", tolerate=0)  # a replayed attempt: idempotent
    assert store.fan_out_counts(parent.run_id, "all") == FanOutCounts(total=None)
    stale = Lease(parent.run_id, "not-the-token", parent.lease.expires_at)
    with pytest.raises(LeaseLost):
        store.open_fan_out(stale, StepWrite("other", 1, StepKind.FAN_OUT, StepStatus.WAITING), function="c", tolerate=0)


def test_create_children_skips_existing_children_and_is_fenced(store: Store, clock: VirtualClock) -> None:
    parent = _claim_one(store, clock)
    store.open_fan_out(
        parent.lease, StepWrite("all", 0, StepKind.FAN_OUT, StepStatus.WAITING), function="c", tolerate=0
    )
    children = _children(parent, 3)
    assert store.create_children(parent.lease, "all", children[:2]) == 2
    assert store.create_children(parent.lease, "all", children) == 1
    assert store.fan_out_counts(parent.run_id, "all").created == 3
    stale = Lease(parent.run_id, "not-the-token", parent.lease.expires_at)
    with pytest.raises(LeaseLost):
        store.create_children(stale, "all", _children(parent, 4)[3:])
    assert store.fan_out_counts(parent.run_id, "all").created == 3


def test_fan_out_counts_counts_the_children_by_status(store: Store, clock: VirtualClock) -> None:
    parent = _claim_one(store, clock)
    _fan_out(store, parent, 3)
    first, _ = store.claim_runs(worker_id="w", limit=2, lease=LEASE)
    store.settle_runs([Complete(first.lease, b"0")])
    counts = store.fan_out_counts(parent.run_id, "all")
    assert (counts.total, counts.queued, counts.running, counts.completed, counts.done) == (3, 1, 1, 1, False)
    assert store.fan_out_counts(parent.run_id, "no-such-step").created == 0


def test_fan_out_results_pages_the_finished_children_in_item_order(store: Store, clock: VirtualClock) -> None:
    parent = _claim_one(store, clock)
    _fan_out(store, parent, 3)
    claimed = store.claim_runs(worker_id="w", limit=3, lease=LEASE)
    store.settle_runs([Complete(c.lease, orjson.dumps(c.event.data * 10)) for c in reversed(claimed)])
    assert [(c.index, c.output) for c in store.fan_out_results(parent.run_id, "all", after=-1, limit=2)] == [
        (0, 0),
        (1, 10),
    ]
    assert [c.index for c in store.fan_out_results(parent.run_id, "all", after=1, limit=2)] == [2]
    assert store.fan_out_results(parent.run_id, "all", after=2, limit=2) == []


def test_wake_finished_fan_outs_leaves_a_fan_out_with_running_children_open(store: Store, clock: VirtualClock) -> None:
    parent = _claim_one(store, clock)
    _fan_out(store, parent, 2)
    first, _ = store.claim_runs(worker_id="w", limit=2, lease=LEASE)
    store.settle_runs([Complete(first.lease, b"0")])
    assert store.wake_finished_fan_outs() == 0
    assert not store.fan_out_counts(parent.run_id, "all").done
    assert store.claim_runs(worker_id="w", limit=10, lease=LEASE) == [], "the parent still waits"


def test_seal_fan_out_a_fan_out_is_counted_from_its_children_and_done_once(store: Store, clock: VirtualClock) -> None:
    parent = _claim_one(store, clock)
    _fan_out(store, parent, 6)
    claimed = store.claim_runs(worker_id="w", limit=10, lease=LEASE)
    assert len(claimed) == 6
    store.settle_runs([Complete(c.lease, orjson.dumps(c.event.data * 2)) for c in claimed[:5]])
    counts = store.fan_out_counts(parent.run_id, "all")
    assert (counts.completed, counts.running, counts.done) == (5, 1, False)
    assert store.claim_runs(worker_id="w", limit=10, lease=LEASE) == []
    store.settle_runs([Fail(claimed[5].lease, ErrorInfo("E", "x"), FailureReason.NON_RETRIABLE)])
    counts = store.fan_out_counts(parent.run_id, "all")
    assert (counts.completed, counts.failed, counts.done) == (5, 1, True)
    [resumed] = store.claim_runs(worker_id="w", limit=10, lease=LEASE)
    assert resumed.run_id == parent.run_id
    page = store.fan_out_results(parent.run_id, "all", after=-1, limit=4)
    assert [(c.index, c.output) for c in page] == [(0, 0), (1, 2), (2, 4), (3, 6)]
    rest = store.fan_out_results(parent.run_id, "all", after=3, limit=4)
    assert [c.index for c in rest] == [4, 5] and rest[1].status == RunStatus.FAILED
    assert store.wake_finished_fan_outs() == 0


def test_seal_fan_out_the_last_children_finishing_concurrently_finish_the_fan_out_exactly_once(
    store: Store, clock: VirtualClock
) -> None:
    for _ in range(5):
        parent = _claim_one(store, clock)
        _fan_out(store, parent, 2)
        claimed = store.claim_runs(worker_id="w", limit=10, lease=LEASE)
        assert len(claimed) == 2
        barrier = threading.Barrier(2)
        threads = [threading.Thread(target=_finish_together, args=(store, c, barrier)) for c in claimed]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        store.wake_finished_fan_outs()
        assert store.fan_out_counts(parent.run_id, "all").done
        [resumed] = store.claim_runs(worker_id="w", limit=10, lease=LEASE)
        assert resumed.run_id == parent.run_id
        store.settle_runs([Complete(resumed.lease, b"0")])


def _finish_together(store: Store, run: ClaimedRun, barrier: threading.Barrier) -> None:
    barrier.wait()
    store.settle_runs([Complete(run.lease, b"1")])


def test_redrive_of_a_fan_out_requeues_its_failed_children_and_its_failed_parent(
    store: Store, clock: VirtualClock
) -> None:
    parent = _claim_one(store, clock)
    ids = _fan_out(store, parent, 3)
    claimed = store.claim_runs(worker_id="w", limit=10, lease=LEASE)
    store.settle_runs([Complete(claimed[0].lease, b"1")])
    store.settle_runs([Fail(c.lease, ErrorInfo("E", "x"), FailureReason.NON_RETRIABLE) for c in claimed[1:]])
    [resumed] = store.claim_runs(worker_id="w", limit=10, lease=LEASE)
    store.record_step(
        resumed.lease,
        StepWrite("all", 0, StepKind.FAN_OUT, StepStatus.FAILED, error=ErrorInfo("FanOutFailed", "2 of 3")),
    )
    store.settle_runs([Fail(resumed.lease, ErrorInfo("FanOutFailed", "2 of 3"), FailureReason.NON_RETRIABLE)])
    redriven = store.redrive(RedriveRequest(parent_id=parent.run_id))
    assert sorted(redriven) == sorted([*ids[1:], parent.run_id]) or sorted(redriven) == sorted(
        [c.run_id for c in claimed[1:]] + [parent.run_id]
    )
    assert store.fan_out_counts(parent.run_id, "all").total is None, "the parent re-seals its fan-out"
    assert store.redrive(RedriveRequest(parent_id=parent.run_id)) == []
