"""What every benchmark shares: plain tables, process memory, drains timed from outside, scratch databases."""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("STEPWELL_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("STEPWELL_BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")
# Names of databases and Redis keys carry this, so that two bench runs at once never collide;
# worker processes inherit it through the environment.
RUN_ID = os.environ.setdefault("STEPWELL_BENCH_RUN", str(os.getpid()))


# tables


def table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]], note: str = "") -> None:
    """Print a plain, aligned table; numbers right-aligned."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    numeric = [all(_is_number(row[i]) for row in rows) and bool(rows) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    print(f"\n{title}")
    print(line(list(headers)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print(line(row))
    if note:
        print(note)
    sys.stdout.flush()


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _cell(value: object) -> str:
    if isinstance(value, float):
        if value >= 100:
            return f"{value:,.0f}"
        if value >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}" if value >= 0.1 else f"{value:.3f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile, q in [0, 100]."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


# processes


def children_of(pid: int) -> list[int]:
    """Every descendant of `pid`, found through /proc (no psutil)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                stat = handle.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of a process (this one by default), through /proc (no psutil)."""
    if pid is None:
        return time.process_time()
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    """VmHWM (peak resident set) of one process, in MiB; 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


@dataclass(frozen=True, slots=True)
class TreeMemory:
    processes: int
    peak_mb: float  # sum of each process's own peak
    largest_mb: float


def tree_memory(pid: int) -> TreeMemory:
    peaks = [peak_rss_mb(p) for p in [pid, *children_of(pid)]]
    peaks = [p for p in peaks if p > 0]
    return TreeMemory(len(peaks), sum(peaks), max(peaks, default=0.0))


def spawn(argv: Sequence[str], env: dict[str, str] | None = None, log: Path | None = None) -> subprocess.Popen[bytes]:
    """Start a worker in its own process group (so stopping it reaches its children too)."""
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        list(argv),
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM the process group we started, then SIGKILL it if it lingers."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    else:  # the leader is gone; children it left in its group must go too
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


# drains


@dataclass(frozen=True, slots=True)
class Drain:
    jobs: int  # jobs counted in the timed window
    seconds: float  # first job done -> last job done
    wall: float  # worker start -> last job done (includes imports and connecting)
    finished: bool  # False when the time limit cut it short
    memory: TreeMemory | None = None

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds if self.seconds > 0 else float("nan")


def time_drain(
    remaining: Callable[[], int],
    total: int,
    *,
    started: float,
    limit: float,
    poll: float = 0.02,
    alive: Callable[[], bool] = lambda: True,
) -> Drain:
    """Poll `remaining()` (a cheap count) until it reaches 0.

    The window opens at the first poll that sees fewer than `total` jobs left, and counts the jobs
    finished from then on, so start-up time (imports, connecting, the first batch) is left out;
    `wall` keeps it for reference.
    """
    first_at: float | None = None
    first_left = total
    left = total
    deadline = started + limit
    while True:
        left = remaining()
        now = time.perf_counter()
        if first_at is None and left < total:
            first_at, first_left = now, left
        if left == 0 or now > deadline or not alive():
            break
        time.sleep(poll)
    end = time.perf_counter()
    if first_at is None:
        return Drain(0, 0.0, end - started, False)
    return Drain(first_left - left, end - first_at, end - started, left == 0)


# scratch places


@contextlib.contextmanager
def scratch_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="stepwell-bench-") as path:
        yield Path(path)


def pg_url(database: str) -> str:
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{database}"


@contextlib.contextmanager
def pg_database(what: str) -> Iterator[str]:
    """A fresh PostgreSQL database for one benchmark of this run, dropped afterwards; yields its URL."""
    import psycopg

    name = f"stepwell_bench_{what}_{RUN_ID}"

    def admin(sql: str) -> None:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(sql)

    admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin(f'CREATE DATABASE "{name}"')
    try:
        yield pg_url(name)
    finally:
        admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class PgCount:
    """A count query run again and again over one autocommit connection."""

    def __init__(self, url: str, sql: str) -> None:
        import psycopg

        self._conn = psycopg.connect(url, autocommit=True)
        self._sql = sql

    def __call__(self) -> int:
        row = self._conn.execute(self._sql).fetchone()  # type: ignore[call-overload]
        return int(row[0]) if row else 0

    def close(self) -> None:
        self._conn.close()
