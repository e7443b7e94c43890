"""Store conformance: the audit log keeps every operator action, newest first, paged by id. Every backend."""

from __future__ import annotations

from datetime import timedelta

from stepwell.clock import VirtualClock
from stepwell.model.audit import MAX_DETAIL, NewAuditEntry
from stepwell.store.base import Store


def test_append_audit_then_list_audit_newest_first(store: Store, clock: VirtualClock) -> None:
    store.append_audit(NewAuditEntry("k1", "alice", "run.cancel", "run-1", "cancelled"))
    clock.advance(timedelta(seconds=5))
    store.append_audit(NewAuditEntry("k2", "bob", "dead_letters.redrive", "function=billing", "3 redriven"))
    first, second = store.list_audit(limit=10)
    assert (first.actor_name, first.action, first.target, first.detail) == (
        "bob", "dead_letters.redrive", "function=billing", "3 redriven",
    )  # fmt: skip
    assert (second.actor_id, second.action, second.at) == ("k1", "run.cancel", clock.now() - timedelta(seconds=5))
    assert first.at == clock.now() and first.id > second.id


def test_list_audit_pages_by_id(store: Store) -> None:
    for number in range(5):
        store.append_audit(NewAuditEntry("k", "n", "key.pause", f"f/{number}"))
    page = store.list_audit(limit=2)
    assert [entry.target for entry in page] == ["f/4", "f/3"]
    following = store.list_audit(limit=2, before=page[-1].id)
    assert [entry.target for entry in following] == ["f/2", "f/1"]


def test_append_audit_clips_long_fields(store: Store) -> None:
    store.append_audit(NewAuditEntry("k", "x" * 100_000, "run.replay", "t" * 100_000, "d" * 100_000))
    [entry] = store.list_audit(limit=1)
    assert len(entry.actor_name) == 200 and len(entry.target) == 500 and len(entry.detail) == MAX_DETAIL


def test_recent_endings_is_the_newest_sample_of_one_status(store: Store, clock: VirtualClock) -> None:
    from stepwell.model.records import RunStatus
    from stepwell.store.base import Complete
    from tests.conformance.helpers import event, new_run

    start = clock.now()
    for _ in range(3):
        store.append_events([event(at=clock.now(), runs=(new_run(at=clock.now()),))])
        [claimed] = store.claim_runs(worker_id="w", limit=1, lease=timedelta(seconds=30))
        clock.advance(timedelta(seconds=1))
        store.settle_runs([Complete(claimed.lease, b"null")])
    endings = store.recent_endings(status=RunStatus.COMPLETED, since=start, limit=2)
    assert [at for _, at in endings] == [clock.now(), clock.now() - timedelta(seconds=1)]
    assert store.recent_endings(status=RunStatus.FAILED, since=start, limit=2) == []
    assert store.recent_endings(status=RunStatus.COMPLETED, since=clock.now() + timedelta(seconds=1), limit=5) == []


def test_list_recent_events_pages_newest_first(store: Store, clock: VirtualClock) -> None:
    from tests.conformance.helpers import event

    for _ in range(5):
        store.append_events([event(at=clock.now())])
        clock.advance(timedelta(seconds=1))
    page = store.list_recent_events(limit=3)
    assert len(page) == 3 and page[0].received_at > page[1].received_at > page[2].received_at
    assert all(record.data is None and record.run_ids == () for record in page), "no data in the stream"
    following = store.list_recent_events(limit=3, before=(page[-1].received_at, page[-1].id))
    assert len(following) == 2 and following[0].received_at < page[-1].received_at
    assert {record.id for record in page}.isdisjoint(record.id for record in following)
