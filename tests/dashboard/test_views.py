"""The pure shaping behind the pages: the folded waterfall, the bounded JSON tree, durations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson

from stepwell.dashboard import views
from stepwell.model.records import Run, RunStatus, Step, StepKind, StepStatus

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def _step(name: str, kind: StepKind, start: float, end: float, position: int) -> Step:
    return Step(
        name, kind, StepStatus.COMPLETED, 1, started_at=T0 + timedelta(seconds=start),
        ended_at=T0 + timedelta(seconds=end), position=position,
    )  # fmt: skip


def _run(*steps: Step) -> Run:
    return Run(
        "r", "f", RunStatus.COMPLETED, 1, 1, None, None, T0, steps=steps, ended_at=max(s.ended_at for s in steps)
    )  # type: ignore[type-var]


def test_a_long_sleep_between_short_steps_is_folded_so_both_steps_stay_visible() -> None:
    run = _run(
        _step("a", StepKind.RUN, 0, 0.04, 0),
        _step("nap", StepKind.SLEEP, 0.04, 3 * 86400, 1),
        _step("b", StepKind.RUN, 3 * 86400, 3 * 86400 + 0.04, 2),
    )
    chart = views.waterfall(run, T0 + timedelta(days=4))
    first, nap, last = chart.bars
    assert nap.idle and not first.idle and not last.idle
    assert [fold.label for fold in chart.folds] == ["⋯ 2 d 23 h idle"]  # 3 days less the 40 ms step
    assert first.width >= 2 and last.width >= 2
    assert last.x < views.WIDTH and last.x > views.WIDTH * 0.5, "the last step is on the chart, not squeezed off it"
    assert chart.total == "3 d 0 h"


def test_short_gaps_are_drawn_to_scale() -> None:
    run = _run(_step("a", StepKind.RUN, 0, 1, 0), _step("b", StepKind.RUN, 2, 3, 1))
    chart = views.waterfall(run, T0 + timedelta(seconds=3))
    assert chart.folds == []
    assert [round(bar.x) for bar in chart.bars] == [0, round(views.WIDTH * 2 / 3)]


def test_a_four_mib_value_renders_a_bounded_tree_and_raw_chunks() -> None:
    value = {"rows": [{"id": n, "text": "x" * 100} for n in range(30_000)], "blob": "y" * 1_000_000}
    assert len(orjson.dumps(value)) > 4 * 1024 * 1024
    tree, cut = views.json_tree(value)
    assert cut

    def count(node: views.Node) -> int:
        return 1 + sum(count(child) for child in node.children)

    assert count(tree) <= views.JSON_NODES
    rows = tree.children[0]
    assert rows.size == 30_000 and rows.hidden > 29_000
    chunk, following = views.raw_chunk(value, 0)
    assert len(chunk) == views.RAW_CHUNK and following == views.RAW_CHUNK
    last, end = views.raw_chunk(value, 10**9)
    assert (last, end) == ("", None)


def test_long_strings_are_cut_in_the_tree() -> None:
    tree, cut = views.json_tree({"s": "z" * 10_000})
    [leaf] = tree.children
    assert leaf.cut and len(leaf.text) == views.JSON_STRING and not cut


def test_durations_read_at_a_glance() -> None:
    assert [views.duration(s) for s in (0.0123, 12.4, 185, 7800, 3 * 86400 + 3600)] == [
        "12 ms", "12.4 s", "3 m 05 s", "2 h 10 m", "3 d 1 h",
    ]  # fmt: skip
    assert views.duration(None) == "—"


def test_throughput_counts_the_whole_window_when_the_sample_holds_it() -> None:
    now = T0 + timedelta(hours=1)
    completed = [("a", now - timedelta(minutes=m)) for m in (1, 2, 3)]
    failed = [("a", now - timedelta(minutes=4))]
    rates = views.throughput(completed, failed, T0, now, limit=10)
    assert not rates.sampled and rates.counts == {"a": (3, 1)}
    assert rates.per_minute("a") == 4 / 60 and rates.failure_rate("a") == 0.25
    assert rates.failure_rate("b") is None


def test_throughput_shortens_the_window_to_what_a_full_sample_covers() -> None:
    now = T0 + timedelta(hours=1)
    completed = [("a", now - timedelta(seconds=s)) for s in range(1, 11)]  # full: 10 in the last 10 s
    failed = [("a", now - timedelta(seconds=5)), ("a", now - timedelta(minutes=30))]
    rates = views.throughput(completed, failed, T0, now, limit=10)
    assert rates.sampled and rates.window == 10.0
    assert rates.counts == {"a": (10, 1)}, "the failure 30 minutes ago is outside the sampled stretch"
    assert rates.per_minute("a") == 11 / 10 * 60
