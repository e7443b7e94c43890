"""Store conformance: operating ordering keys (set_key_paused, drain_key, skip_key) and whole-run
timeouts (fail_overdue_runs). Runs on every backend."""

from __future__ import annotations

from datetime import timedelta

from stepwell.clock import VirtualClock
from stepwell.model.records import ErrorInfo, FailureReason, RunStatus
from stepwell.store.base import Complete, Fail, NewRun, RunFlow, Store
from stepwell.testing.conformance.helpers import event, new_run

LEASE = timedelta(seconds=30)


def _keyed(store: Store, clock: VirtualClock, count: int, flow: RunFlow) -> list[str]:
    runs = [NewRun(new_run(at=clock.now()).id, "fn", 1, flow=flow) for _ in range(count)]
    for run in runs:
        store.append_events([event(at=clock.now(), runs=(run,))])
    return [run.id for run in runs]


def _claim(store: Store) -> list[str]:
    return [c.run_id for c in store.claim_runs(worker_id="w", limit=10, lease=LEASE)]


def test_set_key_paused_holds_the_queued_head_and_resuming_releases_it(store: Store, clock: VirtualClock) -> None:
    first, _ = _keyed(store, clock, 2, RunFlow(ordering_key="k"))
    store.set_key_paused("fn", "k", True)
    assert _claim(store) == []
    store.set_key_paused("fn", "k", False)
    assert _claim(store) == [first]


def test_set_key_paused_lets_a_run_in_progress_finish_and_holds_the_next(store: Store, clock: VirtualClock) -> None:
    first, second = _keyed(store, clock, 2, RunFlow(ordering_key="k"))
    [claimed] = store.claim_runs(worker_id="w", limit=10, lease=LEASE)
    store.set_key_paused("fn", "k", True)
    assert store.settle_runs([Complete(claimed.lease, b"1")]) == []
    assert _claim(store) == []
    store.set_key_paused("fn", "k", False)
    assert _claim(store) == [second]
    assert claimed.run_id == first


def test_drain_key_cancels_the_runs_not_yet_started(store: Store, clock: VirtualClock) -> None:
    first, *rest = _keyed(store, clock, 3, RunFlow(ordering_key="k"))
    assert _claim(store) == [first]
    assert sorted(store.drain_key("fn", "k")) == sorted(rest)
    for run_id in rest:
        run = store.get_run(run_id)
        assert run is not None and run.status == RunStatus.CANCELLED
    running = store.get_run(first)
    assert running is not None and running.status == RunStatus.RUNNING


def test_skip_key_moves_a_parked_key_past_its_dead_letter(store: Store, clock: VirtualClock) -> None:
    first, second = _keyed(store, clock, 2, RunFlow(ordering_key="k", park_on_dead_letter=True))
    assert store.skip_key("fn", "k") is None  # not parked
    [claimed] = store.claim_runs(worker_id="w", limit=10, lease=LEASE)
    assert store.settle_runs([Fail(claimed.lease, ErrorInfo("E", "boom"), FailureReason.NON_RETRIABLE)]) == []
    assert _claim(store) == []  # parked behind its dead letter
    assert store.skip_key("fn", "k") == second
    assert _claim(store) == [second]
    assert claimed.run_id == first


def test_fail_overdue_runs_dead_letters_a_run_past_its_timeout_and_fences_its_worker(
    store: Store, clock: VirtualClock
) -> None:
    [run_id] = _keyed(store, clock, 1, RunFlow(timeout=timedelta(hours=1)))
    [claimed] = store.claim_runs(worker_id="w", limit=1, lease=LEASE)
    assert store.fail_overdue_runs() == 0
    clock.advance(hours=1, seconds=1)
    store.extend_leases([claimed.lease], lease=LEASE)
    assert store.fail_overdue_runs() == 1
    [dead] = store.list_dead_letters()
    assert (dead.run_id, dead.reason, dead.error.type) == (run_id, FailureReason.TIMED_OUT, "RunTimeout")
    assert store.settle_runs([Complete(claimed.lease, b"1")]) == [run_id]
