"""Store conformance for the observability verbs (migration 0005). Runs on every backend."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from stepwell.clock import VirtualClock
from stepwell.model.records import ErrorInfo, FailureReason
from stepwell.store.base import Complete, Fail, RunFlow, RunLogLine, SlotClaim, Store, TraceContext
from tests.conformance.helpers import event, new_run

LEASE = timedelta(seconds=30)
PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _runs(store: Store, clock: VirtualClock, count: int = 1, function: str = "fn") -> tuple[str, list[str]]:
    runs = tuple(new_run(function, at=clock.now()) for _ in range(count))
    sent = event(at=clock.now(), runs=runs)
    store.append_events([sent])
    return sent.id, [r.id for r in runs]


def _line(run_id: str, seq: int, *, segment: int = 0, attempt: int = 0, clock: VirtualClock) -> RunLogLine:
    return RunLogLine(run_id, segment, attempt, seq, clock.now(), "INFO", f"line {segment}/{attempt}/{seq}")


def test_append_run_logs_stores_lines_in_logged_order(store: Store, clock: VirtualClock) -> None:
    _, [run_id] = _runs(store, clock)
    lines = [
        _line(run_id, 0, segment=1, attempt=2, clock=clock),
        _line(run_id, 0, clock=clock),
        _line(run_id, 1, clock=clock),
        _line(run_id, 0, segment=1, clock=clock),
    ]
    assert store.append_run_logs(lines) == 4
    stored = store.list_run_logs(run_id)
    assert [line.message for line in stored.lines] == ["line 0/0/0", "line 0/0/1", "line 1/0/0", "line 1/2/0"]
    assert stored.dropped == 0 and stored.lines[0].at == clock.now() and stored.lines[0].level == "INFO"


def test_append_run_logs_ignores_a_replayed_line(store: Store, clock: VirtualClock) -> None:
    _, [run_id] = _runs(store, clock)
    store.append_run_logs([_line(run_id, 0, clock=clock)])
    assert store.append_run_logs([_line(run_id, 0, clock=clock), _line(run_id, 1, clock=clock)]) == 1
    assert len(store.list_run_logs(run_id).lines) == 2


def test_append_run_logs_drops_the_oldest_past_the_bound_and_counts_them(store: Store, clock: VirtualClock) -> None:
    _, [run_id, other] = _runs(store, clock, 2)
    store.append_run_logs([_line(run_id, seq, clock=clock) for seq in range(5)], max_lines=3)
    store.append_run_logs([_line(run_id, 5, clock=clock), _line(other, 0, clock=clock)], max_lines=3)
    kept = store.list_run_logs(run_id)
    assert [line.seq for line in kept.lines] == [3, 4, 5] and kept.dropped == 3
    assert store.list_run_logs(other).dropped == 0 and len(store.list_run_logs(other).lines) == 1


def test_list_run_logs_returns_the_newest_when_limited(store: Store, clock: VirtualClock) -> None:
    _, [run_id] = _runs(store, clock)
    store.append_run_logs([_line(run_id, seq, clock=clock) for seq in range(5)])
    assert [line.seq for line in store.list_run_logs(run_id, limit=2).lines] == [3, 4]
    assert store.list_run_logs("no-such-run").lines == ()


def test_purge_takes_a_runs_logs_with_it(store: Store, clock: VirtualClock) -> None:
    _, [run_id] = _runs(store, clock)
    store.append_run_logs([_line(run_id, seq, clock=clock) for seq in range(3)], max_lines=2)
    [claimed] = store.claim_runs(worker_id="w", limit=1, lease=LEASE)
    store.settle_runs([Complete(claimed.lease, b"null")])
    clock.advance(days=8)
    from stepwell.store.base import Retention

    assert store.purge(Retention()).runs == 1
    assert store.list_run_logs(run_id) == store.list_run_logs("never-existed")


def test_resolve_run_prefix_finds_unique_and_ambiguous_prefixes(store: Store, clock: VirtualClock) -> None:
    _, ids = _runs(store, clock, 2)
    first, second = sorted(ids)
    common = 0
    while first[common] == second[common]:
        common += 1
    assert store.resolve_run_prefix(first[: common + 1]) == [first]
    assert store.resolve_run_prefix(first[:common]) == [first, second]
    assert store.resolve_run_prefix(first) == [first]
    assert store.resolve_run_prefix("zz") == [] and store.resolve_run_prefix("") == []


def test_set_trace_context_of_a_run_defaults_to_its_events(store: Store, clock: VirtualClock) -> None:
    event_id, [plain, replayed] = _runs(store, clock, 2)
    store.set_trace_context(TraceContext(PARENT, "k=v"), event_ids=[event_id])
    other = "00-11111111111111111111111111111111-2222222222222222-01"
    store.set_trace_context(TraceContext(other, link=True), run_ids=[replayed])
    found = {t.run_id: t for t in store.run_telemetry([plain, replayed])}
    assert found[plain].trace == TraceContext(PARENT, "k=v", link=False)
    assert found[replayed].trace == TraceContext(other, "", link=True)
    assert found[plain].ready_at == clock.now()


def test_run_telemetry_without_context(store: Store, clock: VirtualClock) -> None:
    _, [run_id] = _runs(store, clock)
    [found] = store.run_telemetry([run_id])
    assert found.trace is None and store.run_telemetry([]) == []


def test_claim_runs_carries_ready_time_and_trace_context(store: Store, clock: VirtualClock) -> None:
    """What run_telemetry reads comes with the claim, so the observed store needs no extra query per claim."""
    ready = clock.now()
    event_id, [plain, replayed] = _runs(store, clock, 2)
    store.set_trace_context(TraceContext(PARENT, "k=v"), event_ids=[event_id])
    other = "00-11111111111111111111111111111111-2222222222222222-01"
    store.set_trace_context(TraceContext(other, link=True), run_ids=[replayed])
    clock.advance(seconds=3)
    claimed = {c.run_id: c for c in store.claim_runs(worker_id="w", limit=2, lease=LEASE)}
    assert claimed[plain].ready_at == ready and claimed[plain].claimed_at == ready + timedelta(seconds=3)
    assert claimed[plain].trace == TraceContext(PARENT, "k=v", link=False)
    assert claimed[replayed].trace == TraceContext(other, "", link=True)
    assert {t.run_id: t.trace for t in store.run_telemetry([plain, replayed])} == {
        run_id: c.trace for run_id, c in claimed.items()
    }


def test_append_events_stores_the_events_trace_context_for_its_runs(store: Store, clock: VirtualClock) -> None:
    """The producer's context goes in with the event (no write of its own); a duplicate keeps the first's."""
    plain, limited = new_run(at=clock.now()), new_run("limited", at=clock.now())
    limited = replace(limited, flow=RunFlow(slots=(SlotClaim("limited#c0", "*", 1),)))
    traced = replace(event(at=clock.now(), runs=(plain, limited)), trace=TraceContext(PARENT, "k=v"))
    untraced = event(at=clock.now(), runs=(new_run(at=clock.now()),))
    store.append_events([traced, untraced])
    again = replace(traced, trace=TraceContext("00-11111111111111111111111111111111-2222222222222222-01"))
    assert store.append_events([again])[0].duplicate
    found = {t.run_id: t.trace for t in store.run_telemetry([plain.id, limited.id, untraced.runs[0].id])}
    assert found == {
        plain.id: TraceContext(PARENT, "k=v"),
        limited.id: TraceContext(PARENT, "k=v"),
        untraced.runs[0].id: None,
    }
    claimed = {c.run_id: c.trace for c in store.claim_runs(worker_id="w", limit=5, lease=LEASE)}
    assert claimed == found


def test_claim_runs_carries_ready_time_of_an_admitted_run_without_context(store: Store, clock: VirtualClock) -> None:
    ready = clock.now()
    limited = replace(new_run("limited", at=ready), flow=RunFlow(slots=(SlotClaim("limited#c0", "*", 1),)))
    store.append_events([event(at=ready, runs=(limited,))])
    clock.advance(seconds=2)
    [claimed] = store.claim_runs(worker_id="w", limit=5, lease=LEASE)
    assert claimed.run_id == limited.id and claimed.ready_at == ready and claimed.trace is None


def test_queue_gauges_count_ready_runs_per_function_within_the_scan(store: Store, clock: VirtualClock) -> None:
    oldest = clock.now()
    _runs(store, clock, 3, "alpha")
    clock.advance(seconds=5)
    _runs(store, clock, 2, "beta")
    gauges = {g.function: g for g in store.queue_gauges()}
    assert (gauges["alpha"].ready, gauges["alpha"].oldest_ready_at) == (3, oldest)
    assert gauges["beta"].ready == 2 and not gauges["beta"].capped
    capped = store.queue_gauges(scan_limit=4)
    assert sum(g.ready for g in capped) == 4 and all(g.capped for g in capped)
    store.claim_runs(worker_id="w", limit=10, lease=LEASE)
    assert store.queue_gauges() == []


def test_function_activity_counts_recent_outcomes_and_open_dead_letters(store: Store, clock: VirtualClock) -> None:
    start = clock.now()
    _runs(store, clock, 3, "alpha")
    claimed = store.claim_runs(worker_id="w", limit=3, lease=LEASE)
    error = ErrorInfo("ValueError", "boom")
    store.settle_runs([Complete(claimed[0].lease, b"1"), Complete(claimed[1].lease, b"2")])
    store.settle_runs([Fail(claimed[2].lease, error, FailureReason.NON_RETRIABLE)])
    [alpha] = store.function_activity(since=start)
    assert (alpha.function, alpha.completed, alpha.failed, alpha.dead_letters) == ("alpha", 2, 1, 1)
    clock.advance(seconds=10)
    [later] = store.function_activity(since=clock.now())
    assert (later.completed, later.failed, later.dead_letters) == (0, 0, 1)
