"""Store conformance: events in, runs out, dispositions and idempotency. Runs on every backend."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from stepwell.clock import VirtualClock
from stepwell.model.records import Disposition, RunStatus
from stepwell.store.base import RunFilter, Store
from stepwell.testing.conformance.helpers import event, new_run


def test_append_events_stores_the_event_and_its_runs_together(store: Store, clock: VirtualClock) -> None:
    now = clock.now()
    runs = (new_run("a", at=now), new_run("b", at=now))
    [accepted] = store.append_events([event(data={"x": 1}, at=now, runs=runs)])
    assert not accepted.duplicate
    assert sorted(accepted.run_ids) == sorted(r.id for r in runs)
    record = store.get_event(accepted.id)
    assert record is not None
    assert record.data == {"x": 1}
    assert record.disposition == Disposition.STARTED
    assert sorted(record.run_ids) == sorted(r.id for r in runs)
    listed = store.list_runs(RunFilter(event_id=accepted.id))
    assert {r.function for r in listed} == {"a", "b"}
    assert all(r.status == RunStatus.QUEUED and r.attempt == 1 for r in listed)


def test_append_events_an_event_id_seen_before_starts_nothing_again(store: Store, clock: VirtualClock) -> None:
    now = clock.now()
    [first] = store.append_events([event(at=now, event_id="evt-1", runs=(new_run(at=now),))])
    [again] = store.append_events([event(data={"other": True}, at=now, event_id="evt-1", runs=(new_run(at=now),))])
    assert again.duplicate
    assert again.run_ids == first.run_ids
    assert len(store.list_runs(RunFilter(event_id="evt-1"))) == 1
    record = store.get_event("evt-1")
    assert record is not None and record.data == {}


def test_append_events_an_event_that_matches_nothing_is_kept_with_its_disposition(
    store: Store, clock: VirtualClock
) -> None:
    [accepted] = store.append_events([event("nobody.listens", at=clock.now())])
    record = store.get_event(accepted.id)
    assert record is not None
    assert record.disposition == Disposition.NO_MATCH
    assert record.run_ids == ()


def test_append_events_a_batch_is_written_whole(store: Store, clock: VirtualClock) -> None:
    now = clock.now()
    accepted = store.append_events([event(at=now, runs=(new_run(at=now),)) for _ in range(50)])
    assert len(accepted) == 50
    assert len(store.list_runs(RunFilter(limit=1000))) == 50


def test_create_runs_direct_runs_carry_their_input(store: Store, clock: VirtualClock) -> None:
    run = replace(new_run("direct", at=clock.now()), input=b'{"k": 1}', input_name="stepwell/function.enqueued")
    store.create_runs([run])
    [claimed] = store.claim_runs(worker_id="w", limit=5, lease=timedelta(seconds=30))
    assert claimed.event.name == "stepwell/function.enqueued"
    assert claimed.event.data == {"k": 1}
    assert claimed.event.id is None
    name, data = store.get_run_input(run.id) or ("", b"")
    assert (name, bytes(data)) == ("stepwell/function.enqueued", b'{"k": 1}')


def test_append_events_a_batch_keeps_the_one_time_given_among_events_without_one(
    store: Store, clock: VirtualClock
) -> None:
    """A batch's columns may be mostly empty (the PostgreSQL store then sends one NULL for the column):
    each event still gets its own value."""
    now = clock.now()
    given = now - timedelta(hours=3)
    batch = [event(at=now), replace(event(at=now), ts=given), event(at=now)]
    accepted = store.append_events(batch)
    times = [record.ts for record in map(store.get_event, [a.id for a in accepted]) if record is not None]
    assert times == [now, given, now]
    only_none = store.append_events([event(at=now), event(at=now)])
    assert [store.get_event(a.id) is not None for a in only_none] == [True, True]


def test_create_runs_a_batch_keeps_the_one_input_given_among_runs_without_one(
    store: Store, clock: VirtualClock
) -> None:
    now = clock.now()
    runs = [new_run("direct", at=now), replace(new_run("direct", at=now), input=b'{"k": 1}', input_name="n"),
            new_run("direct", at=now)]  # fmt: skip
    store.create_runs(runs)
    data = [
        None if found is None or found[1] is None else bytes(found[1])
        for found in (store.get_run_input(run.id) for run in runs)
    ]
    assert data == [None, b'{"k": 1}', None]
    assert len(store.list_runs(RunFilter(function="direct"))) == 3
