"""The checkers find what they claim to find: each one fed a history or ledger with one known fault."""

from __future__ import annotations

from datetime import UTC, datetime

from stepwell.model.records import Run, RunStatus, Step, StepKind, StepStatus
from tests.faults.checkers import check, fifo, max_concurrency, reexecuted_steps, superseded
from tests.faults.history import Op
from tests.faults.ledger import Execution

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def op(kind: str, value: str, index: int = 0) -> Op:
    return Op("c", index, kind, "send", value, 0.0)


def run(run_id: str, event_id: str, status: RunStatus = RunStatus.COMPLETED, steps: tuple[Step, ...] = ()) -> Run:
    return Run(run_id, "job", status, 1, 3, event_id, None, T0, steps=steps)


def ex(t: float, run_id: str, attempt: int, phase: str = "start", step: str = "a", **keys: object) -> Execution:
    return Execution(t, 1, run_id, attempt, None, step, phase, **keys)  # type: ignore[arg-type]


def test_lost_unexpected_and_duplicated_events_are_counted() -> None:
    ops = [op("invoke", "e1"), op("ok", "e1"), op("invoke", "e2", 1), op("fail", "e2", 1), op("invoke", "e3", 2)]
    runs = [run("r2", "e2"), run("r3", "e3"), run("r3b", "e3"), run("r4", "never-sent")]
    report = check(ops, [], runs)
    assert report.lost == ["e1"]  # acknowledged, no completed run
    assert report.unexpected == ["e2", "never-sent"]  # refused yet present; never invoked
    assert report.duplicated == ["e3"]
    assert len(report.problems()) == 3


def test_an_unknown_send_may_or_may_not_exist() -> None:
    ops = [op("invoke", "e1"), op("unknown", "e1"), op("invoke", "e2", 1), op("unknown", "e2", 1)]
    assert check(ops, [], [run("r1", "e1")]).problems() == []


def test_a_step_executed_after_its_result_was_stored_is_a_reexecution() -> None:
    stored = Step("a", StepKind.RUN, StepStatus.COMPLETED, 1, output={"attempt": 1}, ended_at=T0)
    runs = {"r1": run("r1", "e1", steps=(stored,))}
    before, after = T0.timestamp() - 1, T0.timestamp() + 1
    assert reexecuted_steps([ex(before, "r1", 1), ex(before + 0.5, "r1", 2)], runs) == []
    assert len(reexecuted_steps([ex(before, "r1", 1), ex(after, "r1", 2)], runs)) == 1


def test_an_earlier_attempt_starting_code_after_a_later_one_began_is_superseded() -> None:
    assert superseded([ex(1, "r1", 1), ex(2, "r1", 2), ex(3, "r1", 2, step="b")]) == []
    assert len(superseded([ex(1, "r1", 1), ex(2, "r1", 2), ex(3, "r1", 1, step="b")])) == 1


def test_fifo_finds_runs_out_of_order_and_overlapping() -> None:
    in_order = [ex(1, "r1", 1, key="k", seq=0), ex(2, "r1", 1, "end", key="k", seq=0), ex(3, "r2", 1, key="k", seq=1)]
    assert fifo(in_order) == []
    swapped = [ex(1, "r2", 1, key="k", seq=1), ex(2, "r1", 1, key="k", seq=0)]
    assert any("began before" in p for p in fifo(swapped))
    overlapping = [
        ex(1, "r1", 1, key="k", seq=0),
        ex(2, "r2", 1, key="k", seq=1),
        ex(3, "r1", 1, "end", key="k", seq=0),
    ]
    assert any("still ran" in p for p in fifo(overlapping))


def test_max_concurrency_counts_overlaps_and_ends_a_killed_attempt_at_its_death() -> None:
    spans = [ex(1, "r1", 1, scope="s"), ex(2, "r2", 1, scope="s"), ex(3, "r1", 1, "end", scope="s")]
    assert max_concurrency(spans) == {"s": 2}
    killed = [ex(1, "r1", 1, scope="s"), ex(5, "r2", 1, scope="s"), ex(6, "r2", 1, "end", scope="s")]
    assert max_concurrency(killed) == {"s": 2}  # r1 never ended: it counts until ...
    assert max_concurrency(killed, deaths={1: 2.0}) == {"s": 1}  # ... its process died
    report = check([], spans, [], limits={"s": 1})
    assert report.over_limit == ["s: 2 at once, limit 1"]
