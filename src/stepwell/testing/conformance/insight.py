"""Store conformance: the dashboard's insight verbs (search_runs, function_durations, list_fan_outs).
Runs on every backend."""

from __future__ import annotations

from datetime import timedelta

from stepwell.clock import VirtualClock
from stepwell.model.ids import child_run_id
from stepwell.model.payload import parse_payload_filter
from stepwell.model.records import ErrorInfo, FailureReason, RunStatus, StepKind, StepStatus
from stepwell.store.base import ClaimedRun, Complete, Fail, NewChild, NewRun, RunFilter, StepWrite, Store, Suspend
from stepwell.testing.conformance.helpers import event, new_run

LEASE = timedelta(seconds=30)
ORDER = {"customer": {"id": 42, "tier": "gold"}, "tags": ["rush", "gift"], "paid": True, "note": None, "code": "42"}


def _send(store: Store, clock: VirtualClock, data: object, function: str = "fn") -> str:
    clock.advance(timedelta(seconds=1))
    run = new_run(function, at=clock.now())
    store.append_events([event("order.placed", data, at=clock.now(), runs=(run,))])
    return run.id


def _search(store: Store, text: str, **filters: object) -> list[str]:
    found = store.search_runs(RunFilter(**filters), parse_payload_filter(text))  # type: ignore[arg-type]
    return [run.id for run in found.runs]


def test_search_runs_matches_a_payload_field_by_its_json_type(store: Store, clock: VirtualClock) -> None:
    match = _send(store, clock, ORDER)
    other = _send(store, clock, {**ORDER, "customer": {"id": 7}, "paid": False, "code": 42})
    assert _search(store, "data.customer.id = 42") == [match]
    assert _search(store, "data.customer.id = 42.0") == [match], "numbers compare as numbers"
    assert _search(store, 'data.customer.tier = "gold"') == [match] == _search(store, "data.customer.tier = gold")
    assert _search(store, "data.tags[0] = rush") == [other, match]
    assert _search(store, "data.paid = true") == [match] and _search(store, "data.paid = false") == [other]
    assert _search(store, "data.note = null") == [other, match]
    assert _search(store, 'data.code = "42"') == [match] and _search(store, "data.code = 42") == [other]
    assert _search(store, "data.missing = 1") == [] and _search(store, "data.customer = 42") == []


def test_search_runs_reads_a_direct_runs_own_input_and_honours_the_other_filters(
    store: Store, clock: VirtualClock
) -> None:
    by_event = _send(store, clock, {"n": 1}, function="a")
    _send(store, clock, {"n": 1}, function="b")
    direct = NewRun(new_run("a", at=clock.now()).id, "a", 1, input=b'{"n": 1}', input_name="a/direct")
    store.create_runs([direct])
    assert _search(store, "data.n = 1", function="a") == [direct.id, by_event]
    assert _search(store, "data.n = 1", function="a", status=RunStatus.COMPLETED) == []
    assert _search(store, "data.n = 1", created_before=clock.now()) == [by_event]


def test_search_runs_is_bounded_by_the_scan_limit_and_resumes_where_it_stopped(
    store: Store, clock: VirtualClock
) -> None:
    wanted = [_send(store, clock, {"hit": True})]
    wanted += [_send(store, clock, {"hit": False}) and _send(store, clock, {"hit": True}) for _ in range(2)]
    for _ in range(4):
        _send(store, clock, {"hit": False})
    payload = parse_payload_filter("data.hit = true")
    first = store.search_runs(RunFilter(limit=10), payload, scan_limit=4)
    assert (first.runs, first.scanned) == ([], 4) and first.resume_after is not None
    second = store.search_runs(RunFilter(limit=10, page_after=first.resume_after), payload, scan_limit=4)
    assert [run.id for run in second.runs] == wanted[:0:-1] and second.scanned == 4
    third = store.search_runs(RunFilter(limit=10, page_after=second.resume_after), payload, scan_limit=4)
    assert [run.id for run in third.runs] == wanted[:1] and third.resume_after is None
    full = store.search_runs(RunFilter(limit=2), payload, scan_limit=100)
    assert [run.id for run in full.runs] == wanted[:0:-1] and full.resume_after == (
        full.runs[-1].created_at, full.runs[-1].id,
    )  # fmt: skip


def _finish(store: Store, clock: VirtualClock, seconds: list[int], fail_last: bool = False) -> None:
    """One run per entry, each ending `seconds` after its claim."""
    for number, took in enumerate(seconds):
        _send(store, clock, {}, function="timed")
        [claimed] = store.claim_runs(worker_id="w", limit=1, lease=timedelta(hours=1))
        clock.advance(timedelta(seconds=took))
        if fail_last and number == len(seconds) - 1:
            store.settle_runs([Fail(claimed.lease, ErrorInfo("E", "x"), FailureReason.NON_RETRIABLE)])
        else:
            store.settle_runs([Complete(claimed.lease, b"1")])


def test_function_durations_gives_nearest_rank_percentiles_and_the_failure_rate(
    store: Store, clock: VirtualClock
) -> None:
    _finish(store, clock, [100])  # ends before the window
    clock.advance(timedelta(seconds=1))
    since = clock.now()
    _finish(store, clock, [1, 3, 2, 4, 10], fail_last=True)
    stats = store.function_durations(since=since, now=clock.now())
    [timed] = stats.functions
    assert (timed.function, timed.completed, timed.failed, timed.p50, timed.p95) == ("timed", 4, 1, 3.0, 10.0)
    assert timed.failure_rate == 0.2 and stats.sampled_from is None
    sampled = store.function_durations(since=since, now=clock.now(), limit=2)
    [newest] = sampled.functions
    assert (newest.completed, newest.failed, newest.p50, newest.p95) == (1, 1, 4.0, 10.0)
    assert sampled.sampled_from is not None and sampled.sampled_from > since
    assert store.function_durations(since=clock.now() + timedelta(seconds=1), now=clock.now()).functions == []


def _open_fan_out(store: Store, clock: VirtualClock, count: int) -> ClaimedRun:
    _send(store, clock, {})
    [parent] = store.claim_runs(worker_id="w", limit=1, lease=LEASE)
    store.open_fan_out(
        parent.lease, StepWrite("all", 0, StepKind.FAN_OUT, StepStatus.WAITING), function="child", tolerate=0.5
    )
    children = [
        NewChild(NewRun(child_run_id(parent.run_id, "all", i), "child", 1, input=b"{}"), i) for i in range(count)
    ]
    store.create_children(parent.lease, "all", children)
    store.seal_fan_out(parent.lease, "all", count)
    store.settle_runs([Suspend(parent.lease, None, waiting=True)])
    return parent


def test_list_fan_outs_newest_first_with_bounded_counts_and_pages(store: Store, clock: VirtualClock) -> None:
    older = _open_fan_out(store, clock, 3)
    children = store.claim_runs(worker_id="w", limit=3, lease=LEASE)
    store.settle_runs([Complete(children[0].lease, b"1")])
    store.settle_runs([Fail(children[1].lease, ErrorInfo("E", "x"), FailureReason.NON_RETRIABLE)])
    newer = _open_fan_out(store, clock, 5)
    first, second = store.list_fan_outs(limit=10)
    assert (first.parent_id, first.step_id, first.function, first.total) == (newer.run_id, "all", "child", 5)
    assert (first.unfinished, first.failed, first.finished, first.done, first.capped) == (5, 0, 0, False, False)
    assert (second.parent_id, second.unfinished, second.failed, second.finished) == (older.run_id, 1, 1, 2)
    assert second.tolerate == 0.5
    [capped] = store.list_fan_outs(limit=1, count_limit=2)
    assert (capped.parent_id, capped.unfinished, capped.capped) == (newer.run_id, 2, True)
    [following] = store.list_fan_outs(limit=1, before=(first.created_at, first.parent_id, first.step_id))
    assert following.parent_id == older.run_id
    assert store.list_fan_outs(before=(second.created_at, second.parent_id, second.step_id)) == []
