"""`python -m bench NAME [--quick]`: run one benchmark (or `all`) and print its figures as plain tables."""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import stepwell
from bench import (
    dashboard,
    flow,
    http_ingest,
    observe,
    peers,
    pg_work,
    postgres,
    push,
    senders,
    soak,
    sqlite,
    sync_drain,
)
from bench.common import ROOT

BENCHMARKS: dict[str, tuple[Callable[[bool], None], str]] = {
    "sqlite-drain": (sqlite.sqlite_drain, "no-op drain with one `stepwell worker` on SQLite; RSS; commits per run"),
    "sqlite-ops": (sqlite.sqlite_ops, "step.run cost, bulk enqueue, single send vs bare sqlite3 on SQLite"),
    "sqlite-senders": (
        senders.sqlite_senders,
        "one event per send from 1, 4 and 16 threads on SQLite: sends/s, commits and CPU per send",
    ),
    "peers": (peers.peers, "no-op drains side by side: bare psycopg, pgqueuer, procrastinate, celery, dramatiq"),
    "pg-ops": (postgres.pg_ops, "step.run cost, bulk enqueue, single send vs bare psycopg on PostgreSQL"),
    "pg-work": (pg_work.pg_work, "database work per no-op run on PostgreSQL: commits, WAL bytes, server CPU"),
    "latency": (postgres.latency, "send -> first step start at a steady 200 events/s, PostgreSQL (and SQLite)"),
    "ordered": (flow.ordered, "drain with an ordering key over 10,000 keys and a keyed concurrency limit vs unordered"),
    "fanout": (flow.fanout, "one parent fans out 1,000,000 children: create, drain, reduce, worker RSS"),
    "http-ingest": (http_ingest.http_ingest, "HTTP ingest (single, batches of 1,000) vs app.send; the Cape burst"),
    "dashboard": (
        dashboard.dashboard,
        "every dashboard page over 1,000,000 runs and 100,000 dead letters, both stores",
    ),
    "observe": (observe.observe_overhead, "no-op drain, each part of observability vs all off: CPU cost"),
    "soak": (soak.quick, "mixed load with periodic faults, then the fault checkers (full: python -m bench.soak)"),
    "push": (push.push_overhead, "push mode on loopback beside the pull worker: no-op drain, cost per step"),
    "sync-drain": (
        sync_drain.sync_drain,
        "sync no-op drain at defaults, SQLite in-process: CPU and commits per run (--against: another src/)",
    ),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("name", choices=[*BENCHMARKS, "all", "list"])
    parser.add_argument("--quick", action="store_true", help="a tiny version that runs in a few seconds")
    parser.add_argument(
        "--runs",
        type=_positive,
        help="dashboard: runs to seed (default 1,000,000); observe: runs per round (default 5,000)",
    )
    parser.add_argument("--rounds", type=_positive, help="observe only: paired rounds per drain (default 5)")
    parser.add_argument(
        "--modes",
        help="observe only: the modes to measure, comma-separated (default all; `off` is always measured first)",
    )
    parser.add_argument("--dead-letters", type=int, help="dashboard only: dead letters to seed (default runs / 10)")
    parser.add_argument(
        "--against", help="sync-drain only: another tree's src/ folder, measured interleaved with this one"
    )
    args = parser.parse_args(argv)
    if args.name == "list":
        for name, (_, about) in BENCHMARKS.items():
            print(f"{name:14} {about}")
        return 0
    names = list(BENCHMARKS) if args.name == "all" else [args.name]
    modes = observe.modes(args.modes)  # a wrong name stops here, before anything runs
    print(
        f"# stepwell bench: {', '.join(names)}{' (quick)' if args.quick else ''} · {_revision()} · "
        f"{os.cpu_count()} cores · load {os.getloadavg()[0]:.1f} · Python {platform.python_version()} · "
        f"{time.strftime('%Y-%m-%d %H:%M')}"
    )
    for name in names:
        begun = time.perf_counter()
        if name == "dashboard" and (args.runs or args.dead_letters is not None):
            dashboard.dashboard(args.quick, args.runs, args.dead_letters)
        elif name == "sync-drain":
            sync_drain.sync_drain(args.quick, args.against)
        elif name == "observe" and (args.modes or args.runs or args.rounds):
            observe.observe_overhead(args.quick, modes, args.runs, args.rounds)
        else:
            BENCHMARKS[name][0](args.quick)
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"# {name} took {time.perf_counter() - begun:.1f}s (load average after: {load})")
    return 0


def _positive(text: str) -> int:
    """An argparse type: a whole number above 0 (a count of runs or rounds)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number above 0")
    return value


def _revision() -> str:
    """The commit measured, and whether the tree had uncommitted changes (or where stepwell came from)."""
    source = Path(stepwell.__file__).resolve().parent.parent.parent
    if source != ROOT:  # e.g. PYTHONPATH=/tmp/snapshot/src to measure an exported commit
        marker = source / "REVISION"
        return f"stepwell from {source}" + (f" (commit {marker.read_text().strip()})" if marker.exists() else "")
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
        dirty = subprocess.run(["git", "status", "--porcelain", "src"], capture_output=True, text=True, cwd=ROOT)
    except OSError:
        return "commit unknown"
    return f"commit {commit.stdout.strip() or '?'}{' + uncommitted src changes' if dirty.stdout.strip() else ''}"


if __name__ == "__main__":
    sys.exit(main())
