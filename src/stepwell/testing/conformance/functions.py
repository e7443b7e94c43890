"""Store conformance: pausing a whole function (set_function_paused), and its state in list_functions.

Runs on every backend.
"""

from __future__ import annotations

from datetime import timedelta

from stepwell.clock import VirtualClock
from stepwell.model.definition import FunctionDefinition
from stepwell.model.records import RunStatus
from stepwell.store.base import Complete, NewRun, RunFlow, SlotClaim, Store, Suspend
from stepwell.testing.conformance.helpers import event, new_run

LEASE = timedelta(seconds=30)


def _send(store: Store, clock: VirtualClock, *functions: str, flow: RunFlow | None = None) -> list[str]:
    """One event starting one run of each function; the runs' ids in that order."""
    runs = tuple(NewRun(new_run(at=clock.now()).id, function, 3, flow=flow) for function in functions)
    [accepted] = store.append_events([event(at=clock.now(), runs=runs)])
    return list(accepted.run_ids)


def _claim(store: Store) -> list[str]:
    return sorted(c.run_id for c in store.claim_runs(worker_id="w", limit=10, lease=LEASE))


def _reason(store: Store, run_id: str) -> str | None:
    run = store.get_run(run_id)
    assert run is not None
    return run.waiting_reason


def test_set_function_paused_holds_its_runs_and_leaves_other_functions_alone(store: Store, clock: VirtualClock) -> None:
    paused, other = _send(store, clock, "fn", "other")
    store.set_function_paused("fn", True)
    assert _claim(store) == [other]
    assert _reason(store, paused) == "function fn is paused"
    assert store.claim_runs(worker_id="w", limit=10, lease=LEASE, functions=["fn"]) == []


def test_set_function_paused_still_creates_the_runs_of_new_events(store: Store, clock: VirtualClock) -> None:
    store.set_function_paused("fn", True)
    [first] = _send(store, clock, "fn")
    [second] = _send(store, clock, "fn")
    run = store.get_run(second)
    assert run is not None and run.status == RunStatus.QUEUED, "ingest goes on: nothing is lost"
    assert _claim(store) == []
    store.set_function_paused("fn", False)
    assert _claim(store) == sorted([first, second]), "resumed: claimable at once"
    assert _reason(store, first) is None  # running


def test_set_function_paused_lets_a_run_in_progress_finish(store: Store, clock: VirtualClock) -> None:
    first, second = _send(store, clock, "fn", "fn")
    [claimed] = store.claim_runs(worker_id="w", limit=1, lease=LEASE)
    store.set_function_paused("fn", True)
    assert store.settle_runs([Complete(claimed.lease, b"1")]) == []
    done = store.get_run(claimed.run_id)
    assert done is not None and done.status == RunStatus.COMPLETED
    assert _claim(store) == []
    waiting = {first, second} - {claimed.run_id}
    assert [_reason(store, run_id) for run_id in waiting] == ["function fn is paused"]


def test_set_function_paused_holds_a_sleeping_run_once_it_is_due(store: Store, clock: VirtualClock) -> None:
    [run_id] = _send(store, clock, "fn")
    [claimed] = store.claim_runs(worker_id="w", limit=1, lease=LEASE)
    store.settle_runs([Suspend(claimed.lease, clock.now() + timedelta(minutes=1))])
    store.set_function_paused("fn", True)
    assert _reason(store, run_id).startswith("sleeping until")  # type: ignore[union-attr]
    clock.advance(minutes=2)
    assert _claim(store) == []
    assert _reason(store, run_id) == "function fn is paused"
    store.set_function_paused("fn", False)
    assert _claim(store) == [run_id]


def test_set_function_paused_holds_runs_that_need_a_concurrency_slot(store: Store, clock: VirtualClock) -> None:
    flow = RunFlow(slots=(SlotClaim("fn#c0", "*", 5),))
    run_ids = _send(store, clock, "fn", "fn", flow=flow)
    store.set_function_paused("fn", True)
    assert _claim(store) == []
    store.set_function_paused("fn", False)
    assert _claim(store) == sorted(run_ids)


def test_set_function_paused_keeps_the_first_pause_time_and_list_functions_shows_it(
    store: Store, clock: VirtualClock
) -> None:
    store.register_functions("shop", [FunctionDefinition("shop", "fn", events=("order.placed",))])
    [row] = store.list_functions().functions
    assert row.paused_at is None
    first = clock.now()
    assert store.set_function_paused("fn", True) == first
    clock.advance(minutes=5)
    assert store.set_function_paused("fn", True) == first, "pausing again keeps the first time"
    [row] = store.list_functions().functions
    assert (row.name, row.paused_at) == ("fn", first)
    assert store.set_function_paused("fn", False) is None
    assert store.set_function_paused("fn", False) is None, "resuming a running function changes nothing"
    [row] = store.list_functions().functions
    assert row.paused_at is None
    assert store.list_functions().generation == 1, "a pause is not a registration: ingest's routing is unchanged"
