"""Store conformance: the store's own verbs (now, close, subscribe). Runs on every backend."""

from __future__ import annotations

import threading

from stepwell.clock import VirtualClock
from stepwell.store.base import Store
from stepwell.testing.conformance.helpers import StoreFactory, event, new_run

WAKE_WITHIN = 10.0  # seconds: a hint may take a poll interval or a reconnect, never this long on a quiet machine


def test_now_is_the_clock_the_store_was_given(store: Store, clock: VirtualClock) -> None:
    assert store.now() == clock.now()
    clock.advance(minutes=5)
    assert store.now() == clock.now()


def test_close_leaves_what_was_written_to_the_next_store_on_the_database(
    store: Store, store_factory: StoreFactory, clock: VirtualClock
) -> None:
    sent = event(at=clock.now(), runs=(new_run(at=clock.now()),))
    store.append_events([sent])
    store.close()
    reopened = store_factory()
    try:
        record = reopened.get_event(sent.id)
        assert record is not None and record.run_ids == (sent.runs[0].id,)
    finally:
        reopened.close()


def test_subscribe_wakes_the_subscriber_when_another_store_commits_work(
    store: Store, store_factory: StoreFactory, clock: VirtualClock
) -> None:
    woken = threading.Event()
    unsubscribe = store.subscribe(woken.set)
    if unsubscribe is None:  # the contract allows a store without notifications: its workers poll
        return
    other = store_factory()
    try:
        woken.clear()  # setting up may itself look like a commit
        other.append_events([event(at=clock.now(), runs=(new_run(at=clock.now()),))])
        assert woken.wait(WAKE_WITHIN), "a run committed by another store did not wake the subscriber"
    finally:
        unsubscribe()
        other.close()
