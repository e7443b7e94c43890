"""Issue 15, item 1: what a default worker costs per sync run, in CPU time and in commits.

An in-process SQLite no-op drain of sync runs at `WorkerOptions()` defaults, measured in CPU time
of the whole process per run (`time.process_time`, every thread: the loop, the user threads, the
store's; as `bench observe` does) and in write transactions per run (`CountingSQLiteStore`).
Wall-clock throughput is printed too, but on a shared machine it is noise; CPU time per run is
not stretched by other processes, and commits per run do not depend on the machine at all.

Each drain runs in a fresh process, so that two source trees can be compared in one session:
`--against SRC` names another tree's `src/` folder (an export of the commit before the change:
`git archive main src | tar -x -C /tmp/before`, then `--against /tmp/before/src`). Rounds
interleave the variants in an order that rotates from round to round; the table shows medians
over rounds, and each variant's ratio to the first (the median of the per-round ratios, so that
drift hits both sides). Every tree is drained with `prefetch` set to the default concurrency (10:
the default before this change) and to the default claim batch (100: the default after it), so
that the two parts of the change show apart: the sync hand-off (compare the trees at one
prefetch) and the claim-ahead default (compare the prefetches in one tree). Each tree's own
default is marked "(default)".

The bench/ code (the app, the preload, the counting store) is this tree's in every variant;
only `stepwell` comes from the tree measured.

A second table times the hand-off alone, in this process: a no-op sync call through
`loop.run_in_executor` on a thread pool against `UserThreads.call`, in batches of the default
concurrency, with `asyncio.gather` alone (no thread) for the floor.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import dataclasses
import functools
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import stepwell
from bench.common import ROOT, median, scratch_dir, table
from stepwell.runtime.worker import WorkerOptions

RUNS = 10_000
ROUNDS = 5
WARM_UP = 300  # runs drained first in each process (first calls, lazy imports): not measured


@dataclass(frozen=True)
class Variant:
    tree: str
    src: Path  # the `src/` folder whose stepwell is measured
    prefetch: int

    @property
    def label(self) -> str:
        return f"{self.tree}, prefetch {self.prefetch}"


@dataclass(frozen=True)
class Sample:
    cpu_per_run: float  # seconds of the process's CPU per run
    commits_per_run: float
    claims_per_run: float
    settles_per_run: float
    both_per_run: float  # settle_and_claim: outcomes saved and runs claimed in one transaction
    rate: float  # runs per wall-clock second (noise on a shared machine)
    source: str  # where the drain's stepwell came from
    default_prefetch: int  # that tree's WorkerOptions().prefetch


def sync_drain(quick: bool, against: str | None = None) -> None:
    """`RUNS` runs per drain, `ROUNDS` rounds (quick: 300 runs, one round)."""
    runs, rounds = (300, 1) if quick else (RUNS, ROUNDS)
    trees = [("this tree", ROOT / "src")]
    if against is not None:
        other = Path(against).resolve()
        if not (other / "stepwell" / "__init__.py").is_file():
            raise SystemExit(f"--against {against}: no stepwell package there (give a tree's src/ folder)")
        trees.insert(0, (str(other), other))
    defaults = WorkerOptions()
    prefetches = (defaults.concurrency, defaults.claim_batch)
    variants = [Variant(tree, src, prefetch) for tree, src in trees for prefetch in prefetches]
    samples: dict[Variant, list[Sample]] = {variant: [] for variant in variants}
    with scratch_dir() as tmp:
        for index in range(rounds):
            turn = index % len(variants)  # rotated: no variant always runs first or right after another
            for number, variant in enumerate((*variants[turn:], *variants[:turn])):
                samples[variant].append(_drain_in_child(variant, runs, tmp / f"drain-{index}-{number}.db"))
    first = samples[variants[0]]
    rows = []
    for variant, found in samples.items():
        ratio = median([s.cpu_per_run / f.cpu_per_run for s, f in zip(found, first, strict=True)])
        default = " (default)" if found[0].default_prefetch == variant.prefetch else ""
        rows.append([
            variant.label + default, runs, rounds, median([s.cpu_per_run * 1e6 for s in found]), f"{ratio:.3f}",
            median([s.commits_per_run for s in found]), median([s.claims_per_run for s in found]),
            median([s.settles_per_run for s in found]), median([s.both_per_run for s in found]),
            median([s.rate for s in found]),
        ])  # fmt: skip
    table(
        f"Sync no-op drain at defaults (concurrency {defaults.concurrency}, claim batch {defaults.claim_batch}): "
        "in-process SQLite worker, CPU time and commits per run",
        [
            "variant",
            "runs",
            "rounds",
            "CPU µs/run",
            "CPU ratio",
            "commits/run",
            "claims/run",
            "settles/run",
            "settle+claim/run",
            "runs/s",
        ],
        rows,
        note="CPU time of the whole drain process (all threads) per run, medians over rounds; the ratio is to the "
        "first row, paired per round. Commits: write transactions (BEGIN IMMEDIATE ... COMMIT); settle+claim: "
        "settle_and_claim's, which save outcomes and claim in one. runs/s is "
        "wall-clock and means little on a shared machine.",
    )
    _hand_off(defaults.concurrency, 2_000 if quick else 100_000, rounds)


def _noop() -> None:
    return None


async def _calls(call: Callable[[], Awaitable[None]], n: int, batch: int) -> None:
    for _ in range(n // batch):
        await asyncio.gather(*(call() for _ in range(batch)))


def _in_pool(pool: concurrent.futures.ThreadPoolExecutor) -> Awaitable[None]:
    return asyncio.get_running_loop().run_in_executor(pool, _noop)


def _hand_off(concurrency: int, n: int, rounds: int) -> None:
    """CPU µs per no-op sync call: the thread pool's hand-off against the user threads'."""
    from stepwell.runtime.userthreads import UserThreads  # here: the drains also run trees without it

    cpu: dict[str, list[float]] = {}
    wakeups: dict[str, str] = {"run_in_executor": "1", "no thread (gather alone)": "-"}

    async def inline() -> None:
        return _noop()

    for _ in range(rounds):
        pool = concurrent.futures.ThreadPoolExecutor(concurrency)
        threads = UserThreads(concurrency)
        calls: dict[str, Callable[[], Awaitable[None]]] = {
            "run_in_executor": functools.partial(_in_pool, pool),
            "UserThreads.call": functools.partial(threads.call, _noop),
            "no thread (gather alone)": inline,
        }
        for label, call in calls.items():
            began = time.process_time()
            asyncio.run(_calls(call, n, concurrency))
            cpu.setdefault(label, []).append((time.process_time() - began) / n * 1e6)
        wakeups["UserThreads.call"] = f"{threads.wakeups / n:.2f}"
        pool.shutdown()
        threads.close()
    table(
        f"The sync hand-off alone: no-op calls in batches of {concurrency}, CPU time per call",
        ["hand-off", "calls", "rounds", "CPU µs/call", "loop wake-ups/call"],
        [[label, n, rounds, median(values), wakeups[label]] for label, values in cpu.items()],
        note="run_in_executor wakes the loop once per call (call_soon_threadsafe); UserThreads once per batch of "
        "results that end together.",
    )


def _drain_in_child(variant: Variant, runs: int, path: Path) -> Sample:
    argv = [sys.executable, "-m", "bench.sync_drain", "--runs", str(runs), "--db", str(path)]
    argv += ["--prefetch", str(variant.prefetch)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(variant.src), str(ROOT)])}
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"{variant.label}: the drain failed:\n{done.stdout}\n{done.stderr}")
    sample = Sample(**json.loads(done.stdout.strip().splitlines()[-1]))
    if not Path(sample.source).is_relative_to(variant.src):  # PYTHONPATH must win over the installed tree
        raise RuntimeError(f"{variant.label}: measured stepwell from {sample.source}, not from {variant.src}")
    return sample


def _child(runs: int, path: Path, prefetch: int) -> Sample:
    """One measured drain (after a small warm-up drain) in this process; stepwell from PYTHONPATH."""
    from bench.apps import make_app
    from bench.stepwell_drain import CountingSQLiteStore, preload

    options = WorkerOptions(prefetch=prefetch)  # every other option at its default
    store = CountingSQLiteStore(path)
    store.migrate()
    app = make_app()
    app.bind(store)
    try:
        preload(app, "noop", WARM_UP)
        asyncio.run(_drain(app, options, WARM_UP))
        preload(app, "noop", runs)
        store.commits.clear()
        cpu, wall = time.process_time(), time.perf_counter()
        asyncio.run(_drain(app, options, runs))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        done = len(app.runs(status="completed", limit=runs + WARM_UP + 1))
        if done < runs + WARM_UP:
            raise RuntimeError(f"only {done - WARM_UP} of {runs} runs completed")
        commits = store.commits
        return Sample(
            cpu_per_run=cpu / runs,
            commits_per_run=sum(commits.values()) / runs,
            claims_per_run=commits["claim_runs"] / runs,
            settles_per_run=commits["settle_runs"] / runs,
            both_per_run=commits["settle_and_claim"] / runs,
            rate=runs / wall,
            source=stepwell.__file__,
            default_prefetch=WorkerOptions().prefetch or 0,
        )
    finally:
        app.close()


async def _drain(app: stepwell.App, options: WorkerOptions, runs: int) -> None:
    worker = app.worker(options)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    deadline = time.monotonic() + 300
    while worker.processed < runs and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    stop.set()
    await task  # settles what is still pending: part of the cost


def main() -> None:
    parser = argparse.ArgumentParser(description="one measured drain; prints its Sample as JSON (see bench sync-drain)")
    parser.add_argument("--runs", type=int, required=True, help="runs in the measured drain")
    parser.add_argument("--db", type=Path, required=True, help="the SQLite file to create")
    parser.add_argument("--prefetch", type=int, required=True, help="WorkerOptions(prefetch=)")
    args = parser.parse_args()
    sample = _child(args.runs, args.db, args.prefetch)
    print(json.dumps(dataclasses.asdict(sample)))


if __name__ == "__main__":
    main()
