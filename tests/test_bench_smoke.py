"""Every benchmark's --quick mode runs and prints its figures, so the bench/ suite cannot rot.

These check that the benchmarks work, not how fast Stepwell is: the figures are not asserted.
The peer comparison needs .bench-venv (bench/setup-peers) and Redis, which the default suite does
not have: its test is bench/test_peers.py, run on demand (see docs/benchmarks.md), so that the
default suite never skips.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NUMBER = r"\d[\d,]*(?:\.\d+)?"


def run_quick(name: str, python: Path | str = sys.executable) -> str:
    done = subprocess.run(
        [str(python), "-m", "bench", name, "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"bench {name} --quick failed:\n{done.stdout}\n{done.stderr}"
    assert f"# {name} took" in done.stdout, done.stdout
    return done.stdout


def row(output: str, label: str) -> str:
    """The first table row that starts with `label`."""
    for line in output.splitlines():
        if line.startswith(label):
            return line
    raise AssertionError(f"no row {label!r} in:\n{output}")


def numbers(line: str) -> list[str]:
    return re.findall(NUMBER, line)


def test_sqlite_drain_prints_rate_memory_and_commits() -> None:
    output = run_quick("sqlite-drain")
    drain = row(output, "sync no-op")
    assert "nan" not in drain and drain.rstrip().endswith("yes"), drain
    assert len(numbers(drain)) >= 5, drain  # concurrency, runs, runs/s, wall, RSS
    assert len(numbers(row(output, "total"))) == 2
    assert "runs/s" in row(output, "in-process drain")


def test_sqlite_ops_prints_step_cost_and_enqueue() -> None:
    output = run_quick("sqlite-ops")
    for label in ("sync ", "async ", "bulk send", "send() one event", "bare insert", "send() rate"):
        line = row(output, label)
        assert "nan" not in line and numbers(line), line


def test_sqlite_senders_prints_rate_commits_and_cpu_per_send_for_each_thread_count() -> None:
    output = run_quick("sqlite-senders")
    for threads in ("1", "4", "16"):
        line = next(line for line in output.splitlines() if line.split()[:1] == [threads])
        assert "nan" not in line and len(numbers(line)) == 7, line
    assert "us/call" in row(output, "bare loop")


def _postgres_ops_or_not_ready(output: str) -> bool:
    """True when the figures are there; False when the bench said the PostgreSQL store is not available."""
    return "not measured: the PostgreSQL store is not available" not in output


def test_pg_ops_prints_step_cost_and_enqueue_when_the_store_is_there() -> None:
    output = run_quick("pg-ops")
    if _postgres_ops_or_not_ready(output):
        for label in ("sync ", "async ", "bulk send", "send() one event", "bare insert", "send() rate"):
            line = row(output, label)
            assert "nan" not in line and numbers(line), line


def test_latency_prints_percentiles() -> None:
    output = run_quick("latency")
    sqlite = row(output, "SQLite")
    assert "nan" not in sqlite and len(numbers(sqlite)) >= 7, sqlite
    if _postgres_ops_or_not_ready(output):
        postgres = row(output, "PostgreSQL")
        assert "nan" not in postgres and len(numbers(postgres)) >= 7, postgres


def test_pg_work_prints_commits_wal_and_server_cpu_per_run_when_the_store_is_there() -> None:
    output = run_quick("pg-work")
    if _postgres_ops_or_not_ready(output):
        for label in ("defaults (sync, concurrency 10)", "async, concurrency 100"):
            line = row(output, label)
            assert "nan" not in line and "n/a" not in line, line
            # runs/s, commits, WAL bytes, records, FPI, cluster WAL bytes, server CPU, worker CPU, backends
            assert len(numbers(line)) >= 10, line  # the label's own "10" / "100" too
            assert int(numbers(line)[-1]) >= 1, line  # found the backends that served the worker
        assert "CLUSTER-WIDE" in output and "Where the WAL goes" in output
        kinds = row(output.split("Where the WAL goes")[1], "async, concurrency 100")
        assert len(numbers(kinds)) >= 4, kinds  # the label's "100", records, bytes, FPI per run


def test_flow_control_drains_print_ratios_to_the_unordered_drain() -> None:
    output = run_quick("ordered")
    for label in ("sqlite  unordered", "sqlite  ordering_key", "sqlite  Concurrency"):
        line = row(output, label)
        assert line.rstrip().endswith("True") and "%" in line, line


def test_fan_out_prints_creation_drain_and_memory() -> None:
    line = row(run_quick("fanout"), "sqlite")
    assert "completed" in line and len(numbers(line)) >= 5, line


def test_http_ingest_prints_rates_ratios_and_the_burst() -> None:
    output = run_quick("http-ingest")
    sqlite_rows = [line for line in output.splitlines() if line.startswith("SQLite")]
    single, batches, burst = sqlite_rows
    for line in (single, batches):
        assert "nan" not in line and len(numbers(line)) >= 4 and "%" in line, line
    assert "one event per call" in single and "batches of 1,000" in batches
    assert numbers(burst)[:2] == ["2,000", "2,000"] and len(numbers(burst)) >= 4, burst


def test_observe_prints_the_cost_of_each_part_against_off() -> None:
    output = run_quick("observe")
    tables = output.split("Observability cost, ")[1:]
    assert [t.split(" drain", 1)[0] for t in tables] == ["no-op", "one step"], output
    for found in tables:
        for label in ("off", "metrics", "tracing", "tracing 10%", "both", "both 10%", "debug logs"):
            line = next((line for line in found.splitlines() if line.startswith(f"{label}  ")), None)
            assert line is not None and "nan" not in line and "%" in line, (label, found)
            assert len(numbers(line)) >= 7, line  # runs, rounds, CPU µs/run, ratio, cost, runs/s, spans/run
        spans = {label: float(numbers(row(found, f"{label}  "))[-1]) for label in ("off", "metrics", "tracing")}
        assert spans["off"] == spans["metrics"] == 0 and spans["tracing"] >= 1, found  # one span per run at least
    assert "CPU time of the whole process" in output


def test_soak_quick_runs_faults_and_the_checkers_find_nothing() -> None:
    output = run_quick("soak")
    assert "push mode on" in row(output, "# soak:")
    assert numbers(row(output, "events sent"))[0] != "0"
    faults = row(output, "faults")
    assert "'kill': 1" in faults and "'web-kill': 1" in faults and "'dispatcher-kill': 1" in faults, output
    pushed = numbers(row(output, "pushed runs"))
    assert int(pushed[0]) > 0 and pushed[0] == pushed[1], output  # every pushed run completed
    assert row(output, "problems").endswith("none"), output
    assert row(output, "slowest recovery")


def test_push_prints_drain_cpu_and_step_cost_beside_the_pull_worker() -> None:
    output = run_quick("push")
    for label in ("pull worker", "push (dispatcher + web app)"):
        line = row(output, label)
        assert "nan" not in line and len(numbers(line)) == 4, line  # runs/s, CPU ms/run, step median, p99
    assert "per-step overhead" in output and "of pull" in output


def test_dashboard_prints_every_page_on_both_stores() -> None:
    output = run_quick("dashboard")
    for store in ("SQLite", "PostgreSQL"):
        assert f"{store}: 2,000 runs" in output, output
    assert "server time over 5 loads" in output and "p95 ms" in output, output
    for page in ("/runs ", "/runs?status=failed", "/runs?payload=", "/dead-letters ", "/functions", "/queue", "/audit",
                 "/fan-outs"):  # fmt: skip
        line = row(output, page)
        assert "nan" not in line and len(numbers(line)) >= 2, line


def test_sync_drain_prints_cpu_and_commits_per_run_for_each_tree() -> None:
    """`--against` is given this tree's own src/ here: the other tree's row must come from a child
    process that imported stepwell from the path given (the bench checks where it came from)."""
    done = subprocess.run(
        [sys.executable, "-m", "bench", "sync-drain", "--quick", "--against", str(ROOT / "src")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"bench sync-drain --quick failed:\n{done.stdout}\n{done.stderr}"
    figures = {}
    for tree in (str(ROOT / "src"), "this tree"):
        for label in (f"{tree}, prefetch 10  ", f"{tree}, prefetch 100 (default)"):
            line = row(done.stdout, label)[len(label) :]  # the label (a path) may hold digits
            assert "nan" not in line and len(numbers(line)) == 9, line  # runs, rounds, CPU, ratio, 4 commits, runs/s
            figures[label] = numbers(line)
    assert figures[f"{ROOT / 'src'}, prefetch 10  "][3] == "1.000"  # the first row is the base of the ratios
    for label in ("run_in_executor", "UserThreads.call", "no thread (gather alone)"):
        line = row(done.stdout, label)
        assert "nan" not in line and len(numbers(line)) >= 3, line  # calls, rounds, CPU µs/call
    assert "# sync-drain took" in done.stdout


def test_sync_drain_refuses_a_folder_without_stepwell(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "sync-drain", "--quick", "--against", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0 and "no stepwell package there" in done.stderr, done.stderr
