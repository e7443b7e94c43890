"""Store conformance: reading runs, events and dead letters (get_run, get_run_input, get_event,
list_dead_letters). Runs on every backend."""

from __future__ import annotations

from datetime import timedelta

import orjson

from stepwell.clock import VirtualClock
from stepwell.model.records import ErrorInfo, FailureReason, RunStatus
from stepwell.store.base import Fail, NewRun, Store
from stepwell.testing.conformance.helpers import event, new_run

LEASE = timedelta(seconds=30)


def test_get_run_returns_none_for_an_unknown_id(store: Store) -> None:
    assert store.get_run("no-such-run") is None
    assert store.get_run_input("no-such-run") is None
    assert store.get_event("no-such-event") is None


def test_get_run_input_is_the_event_a_run_started_from(store: Store, clock: VirtualClock) -> None:
    run = new_run(at=clock.now())
    store.append_events([event("order.placed", {"id": 7}, at=clock.now(), runs=(run,))])
    name, data = store.get_run_input(run.id) or ("", b"")
    assert (name, orjson.loads(data)) == ("order.placed", {"id": 7})
    stored = store.get_run(run.id)
    assert stored is not None and stored.status == RunStatus.QUEUED


def test_get_run_input_of_a_direct_run_is_its_own_input(store: Store, clock: VirtualClock) -> None:
    run = NewRun(new_run(at=clock.now()).id, "fn", 1, input=b'{"n": 1}', input_name="fn/direct")
    assert store.create_runs([run]) == [run.id]
    name, data = store.get_run_input(run.id) or ("", b"")
    assert (name, orjson.loads(data)) == ("fn/direct", {"n": 1})


def test_get_event_lists_the_runs_it_started(store: Store, clock: VirtualClock) -> None:
    runs = (new_run("a", at=clock.now()), new_run("b", at=clock.now()))
    [accepted] = store.append_events([event(at=clock.now(), runs=runs)])
    record = store.get_event(accepted.id)
    assert record is not None and sorted(record.run_ids) == sorted(r.id for r in runs)


def test_list_dead_letters_filters_by_function(store: Store, clock: VirtualClock) -> None:
    for function in ("a", "b"):
        store.append_events([event(at=clock.now(), runs=(new_run(function, at=clock.now(), max_attempts=1),))])
    for claimed in store.claim_runs(worker_id="w", limit=10, lease=LEASE):
        store.settle_runs([Fail(claimed.lease, ErrorInfo("E", "boom"), FailureReason.NON_RETRIABLE)])
    assert sorted(d.function for d in store.list_dead_letters()) == ["a", "b"]
    assert [d.function for d in store.list_dead_letters(function="a")] == ["a"]
