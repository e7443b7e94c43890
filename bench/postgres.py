"""Issue 3: Stepwell on PostgreSQL (`pg-ops`), and send -> start latency (`latency`)."""

from __future__ import annotations

import time
from pathlib import Path

from bench.apps import make_app
from bench.common import percentile, pg_database, scratch_dir, spawn, stop, table
from bench.stepwell_ops import POSTGRES_TARGETS, ops_tables
from bench.worker import command as worker_command

_ready: tuple[bool, str] | None = None


def postgres_store_ready() -> bool:
    """True when Stepwell can send an event on PostgreSQL and find its run (the store is being built)."""
    global _ready
    if _ready is None:
        try:
            with pg_database("probe") as url:
                app = make_app(url)
                try:
                    [event_id] = app.send([{"name": "bench.noop", "data": {}}])
                    assert len(app.runs(event_id=event_id)) == 1, "an event did not start its run"
                finally:
                    app.close()
            _ready = (True, "")
        except Exception as err:  # noqa: BLE001 - any failure means "not ready"; we say which
            _ready = (False, f"{type(err).__name__}: {err}")
    return _ready[0]


def not_ready(title: str) -> None:
    assert _ready is not None
    table(title, ["status"], [[f"not measured: the PostgreSQL store is not available ({_ready[1][:160]})"]])


def pg_ops(quick: bool) -> None:
    if not postgres_store_ready():
        not_ready("PostgreSQL durable step.run and enqueue")
        return
    with pg_database("ops") as url:
        ops_tables("PostgreSQL", lambda: url, quick, POSTGRES_TARGETS)


def latency(quick: bool) -> None:
    """Events at a steady rate; each run's first step writes its start time; latency = start - send returned."""
    rate, seconds = (200, 1.0) if quick else (200, 10.0)
    rows: list[list[object]] = []
    with scratch_dir() as tmp:
        if postgres_store_ready():
            for processes in (1,) if quick else (1, 4):
                with pg_database("latency") as url:
                    rows.append(_latency_row("PostgreSQL", url, processes, rate, seconds, tmp))
        else:
            rows.append(["PostgreSQL", "", 0, "not measured: the PostgreSQL store is not available", "", "", "", ""])
        rows.append(_latency_row("SQLite", f"sqlite:///{tmp / 'latency.db'}", 1, rate, seconds, tmp))
        apart, sends = (0.8, 3) if quick else (1.0, 20)  # longer than the watcher's linger: it is at its idle pace
        label = f"SQLite, sends {apart:g} s apart"
        rows.append(_latency_row(label, f"sqlite:///{tmp / 'latency-idle.db'}", 1, 1 / apart, sends * apart, tmp))
    table(
        f"Latency send -> first step starts, {rate} events/s for {seconds:g} s (PostgreSQL target: p50 <= 2 ms, "
        "p99 <= 5 ms)",
        ["store", "worker processes", "events", "p50 ms", "p90 ms", "p99 ms", "max ms", "not started"],
        rows,
        note="send returned: time.time() in the producer after app.send(); start: time.time() inside the first "
        "step, appended to a file.\nnot started: runs whose first step had not begun 30 s after the last send."
        "\nSQLite: the worker (another process) is woken by its commit watcher, which reads PRAGMA data_version"
        "\nevery 2 ms after a change, backing off to every 20 ms when idle; 'sends ... apart' measures that idle case."
        "\nSQLite target (issue 15): p50 <= 10 ms across processes.",
    )


def _latency_row(store: str, url: str, processes: int, rate: float, seconds: float, tmp: Path) -> list[object]:
    record = tmp / f"starts-{len(list(tmp.glob('starts-*')))}.txt"
    record.write_text("")
    app = make_app(url)
    app.send("bench.latency", {"seq": -1})  # migrates; and its run tells us when the worker is up
    argv = worker_command("bench.apps:app", url, concurrency=10, processes=processes)
    proc = spawn(argv, env={"STEPWELL_BENCH_LATENCY_FILE": str(record)}, log=tmp / "latency-worker.log")
    try:
        _wait_for_lines(record, 1, timeout=30)
        time.sleep(0.5)  # let every process reach its idle wait
        total = int(rate * seconds)
        sent: dict[int, float] = {}
        begun = time.perf_counter()
        for seq in range(total):
            pause = begun + seq / rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            app.send("bench.latency", {"seq": seq})
            sent[seq] = time.time()
        _wait_for_lines(record, total + 1, timeout=30)
    finally:
        stop(proc)
        app.close()
    starts = {int(seq): float(at) for seq, at in (line.split() for line in record.read_text().splitlines())}
    latencies = [(starts[seq] - at) * 1000 for seq, at in sent.items() if seq in starts]
    return [
        store,
        processes,
        len(latencies),
        percentile(latencies, 50),
        percentile(latencies, 90),
        percentile(latencies, 99),
        max(latencies, default=float("nan")),
        len(sent) - len(latencies),
    ]


def _wait_for_lines(path: Path, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.read_text().count("\n") >= count:
            return
        time.sleep(0.01)
