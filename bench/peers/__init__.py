"""Issue 3: no-op drains side by side in one run: a bare psycopg loop, the peers, and Stepwell.

The peers come from .bench-venv (bench/setup-peers); a peer that is not installed is listed as such.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from bench.common import Drain, TreeMemory, scratch_dir, spawn, stop, table, time_drain, tree_memory
from bench.peers.bare import bare_psycopg
from bench.peers.cases import CASES, PeerCase
from bench.postgres import postgres_store_ready
from bench.stepwell_drain import drain_with_workers

BEST_PEER_TARGET = 2.0  # DESIGN §6: Stepwell on PostgreSQL, one process, >= 2x the best peer at its best settings
PG_TARGET = 12_000


def peers(quick: bool) -> None:
    n = 300 if quick else 20_000
    cases = [c for c in CASES if "default" in c.settings] if quick else CASES
    rows: list[list[object]] = []
    rates: dict[str, float] = {}
    with scratch_dir() as tmp:
        stepwell_rows, commits = _stepwell(n, quick, tmp)
        for name, _, drain in stepwell_rows:
            rates.setdefault(name, drain.rate)  # the first of each is the default settings
        for batch in (100,) if quick else (100, 10):
            rate = bare_psycopg(n, batch)
            rows.append(["bare psycopg claim/ack loop", f"batches of {batch}", n, rate, "", "", "", "", "yes"])
        for case in cases:
            rows.append(_peer_row(case, n, tmp))
    reference_name = "stepwell (PostgreSQL)" if "stepwell (PostgreSQL)" in rates else "stepwell (SQLite)"
    reference = rates[reference_name]
    for name, settings, drain in stepwell_rows:
        memory = drain.memory or TreeMemory(0, 0.0, 0.0)
        finished = "yes" if drain.finished else "NO"
        rows.append([name, settings, drain.jobs, drain.rate, "", "", memory.peak_mb, memory.processes, finished])
    for row in rows:
        if isinstance(row[3], float) and row[3] > 0:
            row[4] = f"{reference / row[3]:.2f}x"
    table(
        f"No-op drain, {n:,} pre-loaded jobs, one worker (runs/s; 'stepwell / this' is {reference_name}, "
        f"default settings, divided by the row's rate)",
        ["system", "settings", "jobs", "runs/s", "stepwell / this", "enqueue/s", "peak RSS MB", "procs", "finished"],
        rows,
        note=_notes(rows, rates),
    )
    if commits:
        table(
            "Stepwell on PostgreSQL: transactions committed per run in those drains (pg_stat_database.xact_commit)",
            ["settings", "transactions", "per run"],
            commits,
            note="every transaction the workers committed in the bench database while draining (read-only ones "
            "too), less the bench's own polls; target <= 0.05 per run batched.",
        )


def _stepwell(n: int, quick: bool, tmp: Path) -> tuple[list[tuple[str, str, Drain]], list[list[object]]]:
    """Stepwell's drains in this same run: SQLite always, PostgreSQL when the store is there."""
    found = []
    commits: list[list[object]] = []
    cases = [(10, "noop", 1)] if quick else [(10, "noop", 1), (100, "noop-async", 1)]
    for concurrency, function, processes in cases:
        url = f"sqlite:///{tmp / f'stepwell-{concurrency}.db'}"
        result = drain_with_workers(url, n, function=function, concurrency=concurrency, processes=processes)
        found.append(("stepwell (SQLite)", _settings(function, concurrency, processes), result.drain))
    if postgres_store_ready():
        from bench.common import pg_database

        pg_cases = [(10, "noop", 1)] if quick else [(10, "noop", 1), (10, "noop", 4), (100, "noop-async", 1)]
        for concurrency, function, processes in pg_cases:
            with pg_database("drain") as url:
                result = drain_with_workers(
                    url, n, function=function, concurrency=concurrency, processes=processes, count_commits=True
                )
            settings = _settings(function, concurrency, processes)
            found.append(("stepwell (PostgreSQL)", settings, result.drain))
            if result.commits is not None:
                commits.append([settings, result.commits, result.commits / n])
    return found, commits


def _settings(function: str, concurrency: int, processes: int) -> str:
    kind = "sync" if function == "noop" else "async"
    default = " (default)" if (function, concurrency, processes) == ("noop", 10, 1) else ""
    return f"{kind} no-op, {processes} proc x concurrency {concurrency}{default}"


def _peer_row(case: PeerCase, n: int, tmp: Path) -> list[object]:
    if not case.installed:
        return [case.label, case.settings, 0, "not installed: run bench/setup-peers", "", "", "", "", ""]
    with case.prepare(n) as prepared:
        left = prepared.remaining()
        assert left == n, f"{case.label}: expected {n} queued jobs, found {left}"
        started = time.perf_counter()
        proc = spawn(prepared.argv, env=prepared.env, log=tmp / f"{case.peer}.log")
        try:
            drain = time_drain(
                prepared.remaining, n, started=started, limit=300, poll=0.05, alive=lambda: proc.poll() is None
            )
            memory = tree_memory(proc.pid)
        finally:
            stop(proc, timeout=0.3)  # measured already; what a kill leaves behind is dropped with the database/keys
        if not drain.finished:
            with contextlib.suppress(OSError):
                print(Path(tmp / f"{case.peer}.log").read_text()[-2000:])
    return [
        case.label,
        case.settings,
        drain.jobs,
        drain.rate,
        "",
        prepared.enqueue_rate,
        memory.peak_mb,
        memory.processes,
        "yes" if drain.finished else "NO",
    ]


def _notes(rows: list[list[object]], rates: dict[str, float]) -> str:
    peer_rows = [
        r
        for r in rows
        if isinstance(r[3], float) and r[3] > 0 and r[8] == "yes" and not str(r[0]).startswith(("stepwell", "bare"))
    ]
    lines = [
        "runs/s: peers from the first poll that sees a job done to the poll that sees none left (polled every 50 ms);",
        "        Stepwell from its runs' own timestamps (first start to last end). Start-up is excluded for all.",
        "peak RSS: VmHWM summed over the worker's process tree (procs = processes in it).",
    ]
    if peer_rows:
        best = max(peer_rows, key=lambda r: float(r[3]))  # type: ignore[arg-type]
        lines.append(f"best peer: {best[0]} ({best[1]}) at {float(best[3]):,.0f}/s.")  # type: ignore[arg-type]
        if "stepwell (PostgreSQL)" in rates:
            mine = rates["stepwell (PostgreSQL)"]
            lines.append(
                f"Stepwell on PostgreSQL, one process: {mine:,.0f}/s = {mine / float(best[3]):.2f}x the best peer "  # type: ignore[arg-type]
                f"(targets: >= {PG_TARGET:,}/s and >= {BEST_PEER_TARGET:.0f}x)."
            )
        else:
            lines.append("Stepwell on PostgreSQL: not measured (the PostgreSQL store is not available yet).")
    if os.environ.get("VIRTUAL_ENV", "").endswith(".bench-venv") is False and not peer_rows:
        lines.append("peers need .bench-venv: bench/setup-peers && .bench-venv/bin/python -m bench peers")
    return "\n".join(lines)
