"""Store conformance: claims, leases, fencing, settlement, rescue. Runs on every backend."""

from __future__ import annotations

import threading
from datetime import timedelta

import orjson
import pytest

from stepwell.clock import VirtualClock
from stepwell.errors import LeaseLost
from stepwell.model.records import ErrorInfo, FailureReason, RunStatus, StepKind, StepStatus
from stepwell.store.base import (
    Complete,
    Fail,
    Lease,
    NewRun,
    Retry,
    RunFlow,
    SettledAndClaimed,
    Settlement,
    SlotClaim,
    StepWrite,
    Store,
    Suspend,
)
from stepwell.testing.conformance.helpers import event, new_run

LEASE = timedelta(seconds=30)
BOOM = ErrorInfo("ValueError", "boom")


def _queue(store: Store, clock: VirtualClock, count: int = 1, **kwargs: object) -> list[str]:
    now = clock.now()
    runs = tuple(new_run(at=now, **kwargs) for _ in range(count))  # type: ignore[arg-type]
    store.append_events([event(data={"n": 1}, at=now, runs=runs)])
    return [r.id for r in runs]


def test_claim_runs_leases_ready_runs_with_their_event(store: Store, clock: VirtualClock) -> None:
    ids = _queue(store, clock, 3)
    claimed = store.claim_runs(worker_id="w1", limit=2, lease=LEASE)
    assert len(claimed) == 2
    assert {c.run_id for c in claimed} <= set(ids)
    first = claimed[0]
    assert first.attempt == 1 and first.event.data == {"n": 1} and first.event.name == "order.placed"
    assert first.lease.expires_at == clock.now() + LEASE
    run = store.get_run(first.run_id)
    assert run is not None and run.status == RunStatus.RUNNING
    [third] = store.claim_runs(worker_id="w2", limit=10, lease=LEASE)
    assert third.run_id not in {c.run_id for c in claimed}
    assert store.claim_runs(worker_id="w3", limit=10, lease=LEASE) == []


def test_claim_runs_two_claimers_never_get_the_same_run(store: Store, clock: VirtualClock) -> None:
    _queue(store, clock, 200)
    seen: list[str] = []
    lock = threading.Lock()

    def claim() -> None:
        while batch := store.claim_runs(worker_id=threading.current_thread().name, limit=7, lease=LEASE):
            with lock:
                seen.extend(c.run_id for c in batch)

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 200 and len(set(seen)) == 200


def test_claim_runs_higher_priority_is_claimed_first(store: Store, clock: VirtualClock) -> None:
    [low] = _queue(store, clock, priority=0)
    [high] = _queue(store, clock, priority=50)
    [first] = store.claim_runs(worker_id="w", limit=1, lease=LEASE)
    assert first.run_id == high != low


def test_settle_runs_a_retry_is_not_claimable_before_its_time(store: Store, clock: VirtualClock) -> None:
    _queue(store, clock)
    [claimed] = store.claim_runs(worker_id="w", limit=1, lease=LEASE)
    assert store.settle_runs([Retry(claimed.lease, BOOM, timedelta(hours=2))]) == []
    clock.advance(hours=1, minutes=59)
    assert store.claim_runs(worker_id="w", limit=1, lease=LEASE) == []
    clock.advance(minutes=1)
    [again] = store.claim_runs(worker_id="w", limit=1, lease=LEASE)
    assert (again.run_id, again.attempt) == (claimed.run_id, 2)
    run = store.get_run(claimed.run_id)
    assert run is not None and [e.message for e in run.errors] == ["boom"]


def test_record_step_steps_are_memoized_and_fenced(store: Store, clock: VirtualClock) -> None:
    _queue(store, clock)
    [claimed] = store.claim_runs(worker_id="w", limit=1, lease=LEASE)
    written = store.record_step(
        claimed.lease, StepWrite("fetch", 0, StepKind.RUN, StepStatus.COMPLETED, output=orjson.dumps([1, 2]))
    )
    assert written.output == [1, 2] and written.attempts == 1
    stale = Lease(claimed.run_id, "not-the-token", claimed.lease.expires_at)
    with pytest.raises(LeaseLost):
        store.record_step(stale, StepWrite("save", 1, StepKind.RUN, StepStatus.COMPLETED, output=b"1"))
    store.settle_runs([Retry(claimed.lease, BOOM, timedelta(0))])
    [again] = store.claim_runs(worker_id="w", limit=1, lease=LEASE)
    assert [(s.id, s.output) for s in again.steps] == [("fetch", [1, 2])]


def test_record_step_a_step_that_errored_counts_its_attempts(store: Store, clock: VirtualClock) -> None:
    _queue(store, clock)
    [claimed] = store.claim_runs(worker_id="w", limit=1, lease=LEASE)
    store.record_step(claimed.lease, StepWrite("flaky", 0, StepKind.RUN, StepStatus.ERRORED, error=BOOM))
    done = store.record_step(claimed.lease, StepWrite("flaky", 0, StepKind.RUN, StepStatus.COMPLETED, output=b"7"))
    assert (done.attempts, done.output) == (2, 7)


def test_record_step_sleep_is_measured_by_the_store_clock(store: Store, clock: VirtualClock) -> None:
    _queue(store, clock)
    [claimed] = store.claim_runs(worker_id="w", limit=1, lease=LEASE)
    step = store.record_step(
        claimed.lease, StepWrite("nap", 0, StepKind.SLEEP, StepStatus.SLEEPING, sleep_for=timedelta(minutes=10))
    )
    assert step.wake_at == clock.now() + timedelta(minutes=10)
    store.settle_runs([Suspend(claimed.lease, step.wake_at)])
    run = store.get_run(claimed.run_id)
    assert run is not None and run.status == RunStatus.SLEEPING
    assert store.claim_runs(worker_id="w", limit=1, lease=LEASE) == []
    assert store.queue_stats().next_due == step.wake_at
    clock.advance(minutes=10)
    [woken] = store.claim_runs(worker_id="w", limit=1, lease=LEASE)
    assert woken.run_id == claimed.run_id and woken.attempt == 1


def test_settle_runs_settlement_under_a_lost_lease_changes_nothing(store: Store, clock: VirtualClock) -> None:
    _queue(store, clock)
    [claimed] = store.claim_runs(worker_id="w", limit=1, lease=LEASE)
    stale = Lease(claimed.run_id, "stale", claimed.lease.expires_at)
    assert store.settle_runs([Complete(stale, b"1")]) == [claimed.run_id]
    run = store.get_run(claimed.run_id)
    assert run is not None and run.status == RunStatus.RUNNING
    assert store.settle_runs([Complete(claimed.lease, b"2")]) == []
    run = store.get_run(claimed.run_id)
    assert run is not None and (run.status, run.output) == (RunStatus.COMPLETED, 2)


def test_rescue_expired_leases_expired_lease_goes_to_the_next_worker_and_fences_the_first(
    store: Store, clock: VirtualClock
) -> None:
    _queue(store, clock)
    [first] = store.claim_runs(worker_id="a", limit=1, lease=LEASE)
    clock.advance(seconds=29)
    assert store.rescue_expired_leases() == 0
    clock.advance(seconds=2)
    assert store.rescue_expired_leases() == 1
    [second] = store.claim_runs(worker_id="b", limit=1, lease=LEASE)
    assert (second.run_id, second.attempt) == (first.run_id, 2)
    with pytest.raises(LeaseLost):
        store.record_step(first.lease, StepWrite("s", 0, StepKind.RUN, StepStatus.COMPLETED, output=b"1"))
    assert store.settle_runs([Complete(first.lease, b"1")]) == [first.run_id]
    assert store.settle_runs([Complete(second.lease, b"2")]) == []
    run = store.get_run(first.run_id)
    assert run is not None and run.output == 2 and run.errors[0].type == "LeaseExpired"


def test_extend_leases_heartbeat_keeps_only_leases_still_held(store: Store, clock: VirtualClock) -> None:
    _queue(store, clock, 2)
    a, b = store.claim_runs(worker_id="w", limit=2, lease=LEASE)
    store.cancel_runs([b.run_id])
    clock.advance(seconds=20)
    renewed = store.extend_leases([a.lease, b.lease], lease=LEASE)
    assert [lease.run_id for lease in renewed] == [a.run_id]
    clock.advance(seconds=20)
    assert store.rescue_expired_leases() == 0


def test_rescue_expired_leases_a_run_that_keeps_losing_its_lease_reaches_the_dead_letters(
    store: Store, clock: VirtualClock
) -> None:
    [run_id] = _queue(store, clock, max_attempts=2)
    for _ in range(2):
        assert len(store.claim_runs(worker_id="w", limit=1, lease=LEASE)) == 1
        clock.advance(seconds=31)
        assert store.rescue_expired_leases() == 1
    run = store.get_run(run_id)
    assert run is not None and run.status == RunStatus.FAILED
    [dead] = store.list_dead_letters()
    assert (dead.run_id, dead.reason, dead.attempts) == (run_id, FailureReason.LEASE_LOST, 2)


def test_release_runs_release_gives_the_run_back_without_an_attempt(store: Store, clock: VirtualClock) -> None:
    _queue(store, clock)
    [claimed] = store.claim_runs(worker_id="w", limit=1, lease=LEASE)
    assert store.release_runs([claimed.lease]) == 1
    [again] = store.claim_runs(worker_id="w2", limit=1, lease=LEASE)
    assert (again.run_id, again.attempt) == (claimed.run_id, 1)


def test_settle_runs_final_failure_dead_letters_and_starts_the_failure_handler(
    store: Store, clock: VirtualClock
) -> None:
    [run_id] = _queue(store, clock, on_failure="fn.on-failure")
    [claimed] = store.claim_runs(worker_id="w", limit=1, lease=LEASE)
    store.settle_runs([Fail(claimed.lease, BOOM, FailureReason.NON_RETRIABLE)])
    run = store.get_run(run_id)
    assert run is not None and run.status == RunStatus.FAILED and str(run.error) == "ValueError: boom"
    [dead] = store.list_dead_letters()
    assert dead.reason == FailureReason.NON_RETRIABLE and dead.error.message == "boom"
    [handler] = store.claim_runs(worker_id="w", limit=5, lease=LEASE)
    assert handler.function == "fn.on-failure"
    assert handler.event.name == "stepwell/function.failed"
    assert handler.event.data["run_id"] == run_id
    assert handler.event.data["error"]["message"] == "boom"
    assert handler.event.data["event"] == {"name": "order.placed", "data": {"n": 1}}


def test_redrive_runs_each_entry_once_even_when_asked_twice_at_once(store: Store, clock: VirtualClock) -> None:
    ids = _queue(store, clock, 40)
    claimed = store.claim_runs(worker_id="w", limit=40, lease=LEASE)
    for c in claimed:
        store.record_step(c.lease, StepWrite("ok", 0, StepKind.RUN, StepStatus.COMPLETED, output=b"1"))
        store.record_step(c.lease, StepWrite("bad", 1, StepKind.RUN, StepStatus.FAILED, error=BOOM))
    store.settle_runs([Fail(c.lease, BOOM, FailureReason.RETRIES_EXHAUSTED) for c in claimed])
    results: list[list[str]] = []
    barrier = threading.Barrier(2)

    def redrive() -> None:
        barrier.wait()
        results.append(store.redrive(_request(ids)))

    threads = [threading.Thread(target=redrive) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results[0] + results[1]) == sorted(ids)
    assert store.list_dead_letters() == []
    again = store.claim_runs(worker_id="w", limit=100, lease=LEASE)
    assert len(again) == 40
    assert all(c.attempt == 1 and [s.id for s in c.steps] == ["ok"] for c in again)


def test_cancel_runs_cancel_stops_a_run_and_fences_its_worker(store: Store, clock: VirtualClock) -> None:
    [run_id] = _queue(store, clock)
    [claimed] = store.claim_runs(worker_id="w", limit=1, lease=LEASE)
    assert store.cancel_runs([run_id, "no-such-run"]) == [run_id]
    assert store.cancel_runs([run_id]) == []
    assert store.settle_runs([Complete(claimed.lease, b"1")]) == [run_id]
    run = store.get_run(run_id)
    assert run is not None and run.status == RunStatus.CANCELLED


def _request(ids: list[str]):  # type: ignore[no-untyped-def]
    from stepwell.store.base import RedriveRequest

    return RedriveRequest(run_ids=ids)


def _settle_and_claim(store: Store, settlement: Settlement, limit: int = 10) -> SettledAndClaimed:
    return store.settle_and_claim([settlement], worker_id="w", limit=limit, lease=LEASE)


def test_settle_and_claim_saves_the_outcomes_and_leases_more_runs(store: Store, clock: VirtualClock) -> None:
    ids = _queue(store, clock, 4)
    [first] = store.claim_runs(worker_id="w", limit=1, lease=LEASE)
    result = _settle_and_claim(store, Complete(first.lease, b"1"), limit=2)
    assert result.refused == [] and len(result.claimed) == 2
    assert {c.run_id for c in result.claimed} < set(ids) - {first.run_id}
    assert all(c.attempt == 1 and c.event.data == {"n": 1} for c in result.claimed)
    assert all(c.lease.expires_at == clock.now() + LEASE for c in result.claimed)
    done = store.get_run(first.run_id)
    assert done is not None and (done.status, done.output) == (RunStatus.COMPLETED, 1)
    for claimed in result.claimed:
        run = store.get_run(claimed.run_id)
        assert run is not None and run.status == RunStatus.RUNNING
    [last] = store.claim_runs(worker_id="w", limit=10, lease=LEASE)
    result = _settle_and_claim(store, Complete(last.lease, b"4"))
    assert result == SettledAndClaimed([], []), "nothing left to claim; the outcome is saved all the same"
    run = store.get_run(last.run_id)
    assert run is not None and run.status == RunStatus.COMPLETED


def test_settle_and_claim_refuses_an_outcome_under_a_lost_lease_and_still_claims(
    store: Store, clock: VirtualClock
) -> None:
    _queue(store, clock, 2)
    [first] = store.claim_runs(worker_id="w", limit=1, lease=LEASE)
    stale = Lease(first.run_id, "stale", first.lease.expires_at)
    result = _settle_and_claim(store, Complete(stale, b"1"))
    assert result.refused == [first.run_id] and len(result.claimed) == 1
    run = store.get_run(first.run_id)
    assert run is not None and (run.status, run.output) == (RunStatus.RUNNING, None)


def test_settle_and_claim_the_claim_sees_what_the_settle_wrote(store: Store, clock: VirtualClock) -> None:
    [run_id] = _queue(store, clock)
    [claimed] = store.claim_runs(worker_id="w", limit=1, lease=LEASE)
    result = _settle_and_claim(store, Retry(claimed.lease, BOOM, timedelta(0)))
    [again] = result.claimed
    assert (again.run_id, again.attempt) == (run_id, 2) and again.lease.token != claimed.lease.token
    assert store.settle_runs([Complete(claimed.lease, b"1")]) == [run_id], "the first attempt's lease is gone"


def test_settle_and_claim_hands_an_ordering_key_to_its_next_run_in_the_same_call(
    store: Store, clock: VirtualClock
) -> None:
    runs = [NewRun(new_run(at=clock.now()).id, "fn", 1, flow=RunFlow(ordering_key="k")) for _ in range(3)]
    for run in runs:
        store.append_events([event(at=clock.now(), runs=(run,))])
    [head] = store.claim_runs(worker_id="w", limit=10, lease=LEASE)
    assert head.run_id == runs[0].id
    [second] = _settle_and_claim(store, Complete(head.lease, b"1")).claimed
    assert second.run_id == runs[1].id
    [third] = _settle_and_claim(store, Fail(second.lease, BOOM, FailureReason.NON_RETRIABLE)).claimed
    assert third.run_id == runs[2].id


def test_settle_and_claim_admits_runs_under_a_concurrency_limit(store: Store, clock: VirtualClock) -> None:
    """The claim admits runs that need a slot (PostgreSQL: in a transaction after the settle's)."""
    flow = RunFlow(slots=(SlotClaim("fn#c0", "*", 1),))
    runs = [NewRun(new_run(at=clock.now()).id, "fn", 1, flow=flow) for _ in range(4)]
    store.append_events([event(at=clock.now(), runs=tuple(runs))])
    [holder] = store.claim_runs(worker_id="w", limit=10, lease=LEASE)
    seen = [holder.run_id]
    for _ in range(3):
        result = _settle_and_claim(store, Complete(holder.lease, b"1"))
        assert result.refused == []
        [holder] = result.claimed  # the slot freed by the settle, and no more
        seen.append(holder.run_id)
    assert sorted(seen) == sorted(run.id for run in runs)
    assert _settle_and_claim(store, Complete(holder.lease, b"1")) == SettledAndClaimed([], [])
