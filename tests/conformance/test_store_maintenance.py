"""Store conformance: migrations, retention, listing. Runs on every backend."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

from stepwell.app import open_store
from stepwell.clock import VirtualClock
from stepwell.model.records import ErrorInfo, FailureReason, RunStatus
from stepwell.store.base import Complete, Fail, Retention, RunFilter, Store
from tests.conformance.helpers import event, new_run
from tests.conftest import database_url_for

LEASE = timedelta(seconds=30)


def test_migrate_is_idempotent_and_safe_concurrently(store: Store) -> None:
    assert store.migrate() == []
    errors: list[BaseException] = []

    def migrate() -> None:
        try:
            store.migrate()
        except BaseException as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=migrate) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_applied_migrations_lists_the_schema_versions_and_creates_nothing_on_an_empty_database(
    store: Store, backend: str, tmp_path: Path, clock: VirtualClock
) -> None:
    versions = store.applied_migrations()
    assert versions and versions == sorted(versions) and store.migrate() == []
    empty = open_store(database_url_for(backend, tmp_path / "empty"), clock)
    try:
        assert empty.applied_migrations() == []
        assert empty.applied_migrations() == [], "asking created no schema"
    finally:
        empty.close()


def test_retention_purges_only_terminal_runs_past_their_age(store: Store, clock: VirtualClock) -> None:
    now = clock.now()
    runs = tuple(new_run(at=now, max_attempts=1) for _ in range(4))
    store.append_events([event(at=now, runs=runs)])
    done, dead, running, _queued = runs
    claimed = {c.run_id: c for c in store.claim_runs(worker_id="w", limit=3, lease=LEASE)}
    assert set(claimed) == {done.id, dead.id, running.id}
    store.settle_runs(
        [
            Complete(claimed[done.id].lease, b"1"),
            Fail(claimed[dead.id].lease, ErrorInfo("E", "x"), FailureReason.NON_RETRIABLE),
        ]
    )
    store.append_events([event("nothing", at=now)])
    clock.advance(days=8)
    store.extend_leases([claimed[running.id].lease], lease=LEASE)
    counts = store.purge(Retention())
    assert counts.runs == 1
    assert counts.events == 1
    remaining = {r.id: r.status for r in store.list_runs(RunFilter(limit=10))}
    assert remaining == {dead.id: RunStatus.FAILED, running.id: RunStatus.RUNNING, _queued.id: RunStatus.QUEUED}
    clock.advance(days=23)
    store.extend_leases([claimed[running.id].lease], lease=LEASE)
    assert store.purge(Retention()).runs == 1
    assert store.list_dead_letters() == []


def test_list_runs_filters_and_limits(store: Store, clock: VirtualClock) -> None:
    now = clock.now()
    store.append_events([event(at=now, runs=(new_run("a", at=now), new_run("b", at=now)))])
    store.append_events([event(at=now, runs=(new_run("a", at=now),))])
    assert len(store.list_runs(RunFilter(function="a"))) == 2
    assert len(store.list_runs(RunFilter(function="a", limit=1))) == 1
    assert len(store.list_runs(RunFilter(status=RunStatus.QUEUED))) == 3
    assert store.list_runs(RunFilter(status=RunStatus.COMPLETED)) == []
    assert store.get_run("missing") is None
    assert store.get_event("missing") is None


def test_queue_stats_counts_ready_scheduled_running_and_dead(store: Store, clock: VirtualClock) -> None:
    now = clock.now()
    store.append_events([event(at=now, runs=tuple(new_run(at=now) for _ in range(3)))])
    store.claim_runs(worker_id="w", limit=1, lease=LEASE)
    stats = store.queue_stats()
    assert (stats.ready, stats.scheduled, stats.running, stats.dead_letters) == (2, 0, 1, 0)
