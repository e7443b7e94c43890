"""Store conformance: cron ticks fire exactly once, never for the past, only forward. Runs on every backend."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import orjson

from stepwell.clock import VirtualClock
from stepwell.model.records import Disposition, RunStatus
from stepwell.model.schedule import CRON_EVENT, cron_event_id, iso_utc
from stepwell.store.base import CronTick, NewEvent, RunFilter, Store
from stepwell.testing.conformance.helpers import StoreFactory, event, new_run

HOURLY = "0 * * * * UTC"
LEASE = timedelta(seconds=30)


def cron_tick(
    tick_at: datetime, *, now: datetime, function: str = "report", schedule: str = HOURLY, event_id: str | None = None
) -> CronTick:
    data = orjson.dumps({"cron": schedule, "scheduled_at": iso_utc(tick_at)})
    event_id = event_id or cron_event_id(function, tick_at)
    cron_event = NewEvent(event_id, CRON_EVENT, data, tick_at, (new_run(function, at=now),))
    return CronTick(function, schedule, tick_at, cron_event, forget_before=tick_at - timedelta(days=7))


def all_runs(store: Store) -> list[str]:
    return [run.id for run in store.list_runs(RunFilter(limit=1000))]


def test_fire_cron_tick_a_new_schedule_is_registered_and_never_fires_a_past_tick(
    store: Store, clock: VirtualClock
) -> None:
    now = clock.now()
    assert not store.fire_cron_tick(cron_tick(now - timedelta(hours=1), now=now))
    assert not store.fire_cron_tick(cron_tick(now, now=now)), "a tick at the moment it is first seen is past too"
    clock.advance(minutes=10)
    assert not store.fire_cron_tick(cron_tick(now, now=clock.now()))
    assert all_runs(store) == []


def test_fire_cron_tick_a_tick_after_registration_starts_one_run_with_its_event(
    store: Store, clock: VirtualClock
) -> None:
    start = clock.now()
    store.fire_cron_tick(cron_tick(start, now=start))
    tick_at = start + timedelta(hours=1)
    clock.set(tick_at)
    tick = cron_tick(tick_at, now=tick_at)
    assert store.fire_cron_tick(tick)
    [run_id] = all_runs(store)
    record = store.get_event(tick.event.id)
    assert record is not None
    assert (record.name, record.disposition, record.run_ids) == (CRON_EVENT, Disposition.STARTED, (run_id,))
    assert record.ts == tick_at
    [claimed] = store.claim_runs(worker_id="w", limit=5, lease=LEASE)
    assert (claimed.run_id, claimed.function, claimed.event.id) == (run_id, "report", tick.event.id)
    assert claimed.event.data == {"cron": HOURLY, "scheduled_at": iso_utc(tick_at)}


def test_fire_cron_tick_the_same_tick_fires_once_however_often_it_is_asked(store: Store, clock: VirtualClock) -> None:
    start = clock.now()
    store.fire_cron_tick(cron_tick(start, now=start))
    tick_at = start + timedelta(hours=1)
    clock.set(tick_at + timedelta(seconds=5))
    fired = [store.fire_cron_tick(cron_tick(tick_at, now=clock.now())) for _ in range(3)]
    assert fired == [True, False, False]
    assert len(all_runs(store)) == 1


def test_fire_cron_tick_ticks_only_move_forward(store: Store, clock: VirtualClock) -> None:
    start = clock.now()
    store.fire_cron_tick(cron_tick(start, now=start))
    clock.advance(hours=3)
    assert store.fire_cron_tick(cron_tick(start + timedelta(hours=3), now=clock.now()))
    # a scheduler that lags behind (an older tick, though after registration) fires nothing
    assert not store.fire_cron_tick(cron_tick(start + timedelta(hours=2), now=clock.now()))
    assert len(all_runs(store)) == 1


def test_fire_cron_tick_a_changed_schedule_starts_afresh_from_when_it_is_first_seen(
    store: Store, clock: VirtualClock
) -> None:
    start = clock.now()
    store.fire_cron_tick(cron_tick(start, now=start, schedule="0 3 * * * UTC"))
    clock.advance(days=1)
    daily = "30 4 * * * UTC"
    assert not store.fire_cron_tick(cron_tick(start + timedelta(hours=4, minutes=30), now=clock.now(), schedule=daily))
    assert all_runs(store) == []
    clock.advance(days=1)
    later = start + timedelta(days=2, hours=4, minutes=30)
    assert store.fire_cron_tick(cron_tick(later, now=clock.now(), schedule=daily))


def test_fire_cron_tick_two_schedules_of_a_function_that_meet_on_an_instant_start_one_run(
    store: Store, clock: VirtualClock
) -> None:
    start = clock.now()
    half_hourly = "*/30 * * * * UTC"
    for schedule in (HOURLY, half_hourly):
        store.fire_cron_tick(cron_tick(start, now=start, schedule=schedule))
    tick_at = start + timedelta(hours=1)
    clock.set(tick_at)
    assert store.fire_cron_tick(cron_tick(tick_at, now=tick_at, schedule=HOURLY))
    # the tick's row decides, not the event id (here a different one, as if the first event had been purged)
    assert not store.fire_cron_tick(cron_tick(tick_at, now=tick_at, schedule=half_hourly, event_id="other"))
    clock.advance(minutes=30)
    assert store.fire_cron_tick(cron_tick(tick_at + timedelta(minutes=30), now=clock.now(), schedule=half_hourly))
    assert len(all_runs(store)) == 2


def test_fire_cron_tick_a_tick_whose_event_exists_already_starts_nothing_more(
    store: Store, clock: VirtualClock
) -> None:
    start = clock.now()
    store.fire_cron_tick(cron_tick(start, now=start))
    tick_at = start + timedelta(hours=1)
    tick = cron_tick(tick_at, now=tick_at)
    store.append_events([event(CRON_EVENT, at=start, event_id=tick.event.id, runs=(new_run("report", at=start),))])
    clock.set(tick_at)
    assert not store.fire_cron_tick(tick)
    assert len(all_runs(store)) == 1


def test_fire_cron_tick_concurrent_schedulers_on_separate_connections_fire_each_tick_once(
    store_factory: StoreFactory, clock: VirtualClock
) -> None:
    stores = [store_factory() for _ in range(6)]
    try:
        stores[0].migrate()
        start = clock.now()
        stores[0].fire_cron_tick(cron_tick(start, now=start))
        for hour in (1, 2, 3):
            tick_at = start + timedelta(hours=hour)
            clock.set(tick_at + timedelta(seconds=1))
            results = fire_at_once(stores, tick_at, clock)
            assert sorted(results) == [False] * (len(stores) - 1) + [True]
        runs = stores[0].list_runs(RunFilter(limit=1000))
        assert len(runs) == 3
        assert all(run.status == RunStatus.QUEUED for run in runs)
        assert len({run.event_id for run in runs}) == 3
    finally:
        for store in stores:
            store.close()


def fire_at_once(stores: list[Store], tick_at: datetime, clock: VirtualClock) -> list[bool]:
    """Every store asks for the same tick at the same moment, each from its own thread."""
    results: list[bool] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(stores))

    def fire(store: Store) -> None:
        try:
            barrier.wait()
            results.append(store.fire_cron_tick(cron_tick(tick_at, now=clock.now())))
        except BaseException as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=fire, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return results
