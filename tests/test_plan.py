"""The planner (store/plan/) in memory: a snapshot in, a change-set out. No database, no clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson

from stepwell.store.base import Gate, Gathering, NewEvent, NewRun, NewWait, RunFlow, SlotClaim
from stepwell.store.plan import admission, lines, starts, waits
from stepwell.store.plan.failures import ExpiredLease, plan_rescue
from stepwell.store.plan.lines import Line

AT = datetime(2030, 1, 1, tzinfo=UTC)


def _run(n: int, **flow: object) -> NewRun:
    return NewRun(f"r{n}", "fn", 3, flow=RunFlow(**flow))  # type: ignore[arg-type]


def _admit(
    runs: list[NewRun], snapshot: admission.Snapshot | None = None
) -> tuple[list[admission.Outcome], admission.Admission]:
    return admission.admit(snapshot or admission.Snapshot(AT), [(r, f"e{r.id}") for r in runs])


def test_a_key_goes_to_its_first_run_and_the_rest_wait_in_line() -> None:
    outcomes, changes = _admit([_run(1, ordering_key="k"), _run(2, ordering_key="k")])
    assert outcomes == [None, None]
    assert [(row.run.id, row.hold) for row in changes.new_runs] == [("r1", None), ("r2", "ordering")]
    line = changes.lines[("fn", "k")]
    assert (line.head, line.changed) == ("r1", True)


def test_a_paused_key_holds_its_new_head() -> None:
    snapshot = admission.Snapshot(AT, lines={("fn", "k"): Line(None, paused=True)})
    _, changes = _admit([_run(1, ordering_key="k")], snapshot)
    assert changes.new_runs[0].hold == "paused"


def test_a_rate_limit_skips_the_excess_and_records_why() -> None:
    gate = Gate("fn#rl", "*", limit=2, period=timedelta(minutes=1), burst=2)
    outcomes, changes = _admit([_run(n, rate_limit=gate) for n in range(3)])
    assert outcomes == [None, None, ("rate_limited", None)]
    assert changes.skips == [("er2", "fn", "rate_limited", None)]
    assert changes.gates_changed == {("fn#rl", "*")}


def test_an_idempotency_key_sends_a_repeat_to_the_run_holding_it_until_it_expires() -> None:
    outcomes, _ = _admit([_run(1, idempotency_key="x"), _run(2, idempotency_key="x")])
    assert outcomes == [None, ("deduplicated", "r1")]
    expired = admission.Snapshot(AT, idempotency={("fn", "x"): ("r0", AT)})
    outcomes, changes = _admit([_run(3, idempotency_key="x")], expired)
    assert outcomes == [None] and changes.keys_taken == {("fn", "x")}


def test_debounce_folds_later_events_into_the_pending_run_within_its_max_wait() -> None:
    debounce = Gathering("*", period=timedelta(seconds=10), max_wait=timedelta(seconds=15))
    pending = admission.Pending("r0", AT - timedelta(seconds=10), "e-old")
    snapshot = admission.Snapshot(AT, debounces={("fn", "*"): pending})
    outcomes, changes = _admit([_run(1, debounce=debounce)], snapshot)
    assert outcomes == [("folded", "r0")]
    assert changes.pushes == {"r0": ("er1", AT + timedelta(seconds=5))}  # capped by max_wait
    assert changes.skips == [("e-old", "fn", "debounced", "r0")]
    assert changes.new_runs == []


def test_a_batch_fills_then_starts_at_once() -> None:
    batch = Gathering("*", period=timedelta(minutes=1), size=2)
    outcomes, changes = _admit([_run(1, batch=batch), _run(2, batch=batch), _run(3, batch=batch)])
    assert outcomes == [None, ("batched", "r1"), None]
    assert changes.pushes == {"r1": (None, AT)}
    assert [(row.run.id, row.note) for row in changes.new_runs] == [("r1", "batching"), ("r3", "batching")]
    assert changes.batch_events == [("r1", 0, "er1"), ("r1", 1, "er2"), ("r3", 0, "er3")]


def test_new_runs_register_their_slots_and_cancel_waits() -> None:
    wait = NewWait("order.cancelled", "data.id", "7", None, b"{}", None)
    _, changes = _admit([_run(1, slots=(SlotClaim("fn#c0", "*", 2),), cancel_on=(wait,))])
    assert changes.run_slots == [("r1", "fn#c0", "*", 2)]
    assert changes.cancel_waits == [("r1", "cancel_on#0", wait)]


def test_starts_hold_a_run_whose_slot_is_full_and_put_off_a_throttled_one() -> None:
    slot = (("fn#c0", "*", 1),)
    gate = Gate("fn#th", "*", limit=1, period=timedelta(seconds=10), burst=1)
    candidates = [
        starts.Candidate("a", slot),
        starts.Candidate("b", slot),
        starts.Candidate("c", (), gate),
        starts.Candidate("d", (), gate),
    ]
    decided = starts.plan_starts(candidates, {}, {}, AT)
    assert decided.admitted == ["a", "c"]
    assert decided.held == [("b", "fn#c0")]
    assert decided.throttled == [("d", AT + timedelta(seconds=10))]
    assert decided.slots == {("fn#c0", "*"): 1}


def test_a_slot_given_back_releases_its_first_waiter() -> None:
    release = starts.plan_release([("fn#c0", "*"), ("fn#c1", "u1")], {("fn#c0", "*"): "w1", ("fn#c1", "u1"): None})
    assert release.released == [("w1", "fn#c0")]


def test_an_ended_head_hands_its_key_on_parks_it_or_drops_it() -> None:
    line = Line("r1", paused=False)
    assert lines.head_ended(line, "r1", failed=False, park=False, next_run="r2").holds == (("r2", None),)
    parked = lines.head_ended(line, "r1", failed=True, park=True, next_run=None)
    assert (parked.line, parked.dead_letter_policy) == (Line("r1", False, True), "parked")
    assert lines.head_ended(line, "r1", failed=True, park=False, next_run=None).drop
    assert lines.promote(Line("r1", paused=True), None).line == Line(None, True, False)  # a pause outlives its line


def test_a_redriven_run_takes_a_free_or_parked_key_back_else_waits() -> None:
    assert lines.rejoin(None, "r1").holds == (("r1", None),)
    assert lines.rejoin(Line("r1", parked=True), "r1").line == Line("r1", False, False)
    assert lines.rejoin(Line("r2"), "r1").holds == (("r1", "ordering"),)


def test_rescue_requeues_until_the_last_attempt_then_dead_letters() -> None:
    rescued = plan_rescue([ExpiredLease("a", "t", 1, 3), ExpiredLease("b", "t", 3, 3)])
    assert [(r.lease.run_id, r.dead, r.error.type) for r in rescued] == [
        ("a", False, "LeaseExpired"),
        ("b", True, "LeaseExpired"),
    ]


def test_the_first_matching_event_wins_a_wait_and_conditions_filter() -> None:
    first = waits.offered(NewEvent("e1", "paid", orjson.dumps({"amount": 5}), AT, ()))
    second = waits.offered(NewEvent("e2", "paid", orjson.dumps({"amount": 50}), AT, ()))
    matches = waits.WaitMatches(lambda condition, origin, incoming: incoming["data"]["amount"] > 10)
    rows = [
        ("r1", "s1", None, b"{}", "event"),
        ("r2", "s1", "big", b"{}", "event"),
        ("r3", "cancel_on#0", None, b"{}", "cancel"),
    ]
    matches.offer(first, rows)
    matches.offer(second, rows)
    assert {key: event for key, (event, _) in matches.resolve.items()} == {("r1", "s1"): "e1", ("r2", "s1"): "e2"}
    assert matches.cancel == {"r3": "e1"}
    assert waits.lookups(first, ["data.amount", "data.missing", None]) == [("data.amount", "5"), (None, None)]
