"""Issue 2: Stepwell on SQLite. `sqlite-drain` and `sqlite-ops`."""

from __future__ import annotations

from bench.common import scratch_dir, table
from bench.stepwell_drain import counted_sqlite_drain, drain_with_workers
from bench.stepwell_ops import SQLITE_TARGETS, ops_tables

TARGET_DRAIN = 20_000


def sqlite_drain(quick: bool) -> None:
    n = 300 if quick else 20_000
    cases = [("noop", 10)] if quick else [("noop", 10), ("noop", 100), ("noop-async", 10), ("noop-async", 100)]
    rows = []
    with scratch_dir() as tmp:
        for number, (function, concurrency) in enumerate(cases):
            url = f"sqlite:///{tmp / f'drain-{number}.db'}"
            result = drain_with_workers(url, n, function=function, concurrency=concurrency, log=tmp / "worker.log")
            drain = result.drain
            assert drain.memory is not None
            rows.append(
                [
                    f"{'sync' if function == 'noop' else 'async'} no-op",
                    concurrency,
                    drain.jobs,
                    drain.rate,
                    f"{drain.rate / TARGET_DRAIN:.0%}",
                    drain.wall,
                    drain.memory.peak_mb,
                    "yes" if drain.finished else "NO (time limit)",
                ]
            )
        table(
            f"SQLite drain: {n:,} pre-loaded no-op runs, one `stepwell worker` process (target >= {TARGET_DRAIN:,}/s)",
            ["function", "concurrency", "runs timed", "runs/s", "of target", "wall s", "peak RSS MB", "finished"],
            rows,
            note="runs/s: n / (last ended_at - first started_at), from the runs' own timestamps;"
            " wall s: worker start to empty.",
        )
        counted = counted_sqlite_drain(tmp / "counted.db", n)
        breakdown = sorted(counted.commits.items(), key=lambda item: -item[1])
        table(
            "SQLite commits per run: the same drain in-process, write transactions counted at the store",
            ["operation", "commits", "per run"],
            [[op, count, count / counted.runs] for op, count in breakdown]
            + [["total", sum(counted.commits.values()), counted.per_run]]
            + [["COMMITs, after group commit", counted.shared, counted.shared / counted.runs]],
            note=f"in-process drain (concurrency 10): {counted.runs / counted.seconds:,.0f} runs/s; "
            "target <= 0.05 commits/run batched, <= 2 unbatched",
        )


def sqlite_ops(quick: bool) -> None:
    with scratch_dir() as tmp:
        counter = iter(range(100))
        ops_tables("SQLite", lambda: f"sqlite:///{tmp / f'ops-{next(counter)}.db'}", quick, SQLITE_TARGETS)
