"""Issue 15 item 6, `pg-work`: the database's work per no-op run on PostgreSQL, which decides scale-out.

Workers scale out by adding hosts; the one PostgreSQL primary does not. What each run costs it —
transactions committed, WAL written, CPU in the backends that serve the worker — says how many
runs per second one primary can carry, whatever the number of worker hosts. Measured around a
real `stepwell worker` draining a pre-loaded backlog (bench/stepwell_drain.py), from outside the
bench database: the counters are read over a connection to the admin database, so the meter's
own reads are not counted.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from bench.common import PG_ADMIN_URL, cpu_seconds, pg_database, table
from bench.postgres import not_ready, postgres_store_ready
from bench.stepwell_drain import drain_with_workers

COMMITS_TARGET = 0.05  # per no-op run in a batched drain (issue 15)
WAL_TARGET = 1024  # bytes per no-op run in a batched drain (issue 15)
STATS_FLUSH = 1.2  # seconds: backends report their counters at most once a second, and at exit

HEADERS = ["settings", "runs/s", "commits/run", "WAL B/run", "WAL records/run", "FPI/run", "cluster WAL B/run",
           "server CPU µs/run", "worker CPU µs/run", "backends"]  # fmt: skip
CASES = [("defaults (sync, concurrency 10)", "noop", 10), ("async, concurrency 100", "noop-async", 100)]

COUNTERS = "SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = %(db)s), pg_current_wal_flush_lsn()"
# The WAL of this database alone, read back with pg_walinspect (contrib, PostgreSQL 15+): records
# that touch one of its relations, and the commit records of the transactions that wrote them.
OWN_WAL = """
WITH wal AS (SELECT * FROM pg_get_wal_records_info(%(start)s::pg_lsn, %(end)s::pg_lsn)),
     ours AS (SELECT DISTINCT xid FROM wal WHERE block_ref LIKE %(relations)s AND xid <> 0)
SELECT resource_manager || ' ' || record_type, count(*), sum(record_length), count(*) FILTER (WHERE fpi_length > 0)
FROM wal
WHERE block_ref LIKE %(relations)s OR (resource_manager = 'Transaction' AND xid IN (SELECT xid FROM ours))
GROUP BY 1 ORDER BY 3 DESC
"""
BACKENDS = "SELECT pid FROM pg_stat_activity WHERE datname = %(db)s AND backend_type = 'client backend'"
KEEP_WAL = "SELECT pg_create_physical_replication_slot(%(slot)s, true, true)"  # reserve now; temporary
WAL_SINCE = "SELECT pg_wal_lsn_diff(pg_current_wal_flush_lsn(), %(lsn)s::pg_lsn)"


@dataclass
class PgWorkMeter:
    """One database's work around a drain: commits, its own WAL and the cluster's, the serving backends' CPU.

    Backends are those of the database that were not there before the worker started (the bench's
    own connections were); each one's CPU is its whole life up to the last sample, connecting and
    the worker's start-up included, as the commits are. A backend that came and went between two
    samples is missed; the worker keeps its pool, so there are none in practice.
    """

    url: str
    admin: Any = None
    before: tuple[int, str] | None = None
    after: tuple[int, str] | None = None
    cluster_wal: float = 0.0  # bytes, every database's
    own_wal: list[tuple[str, int, int, int]] | str = "not read"  # (kind, records, bytes, with a full-page image)
    idle_wal_per_s: float = 0.0
    own: set[int] = field(default_factory=set)
    backend_cpu: dict[int, float] = field(default_factory=dict)
    proc_readable: bool = True
    worker_cpu: float = 0.0

    def begin(self) -> None:
        import psycopg

        self.admin = psycopg.connect(PG_ADMIN_URL, autocommit=True)
        self._keep_wal()
        self.own = set(self._backends())
        self.proc_readable = _process_cpu(int(self.admin.execute("SELECT pg_backend_pid()").fetchone()[0])) is not None
        self.idle_wal_per_s = self._idle_wal_rate()
        self.before = self._counters()

    def sample(self, worker_pid: int) -> None:
        for pid in set(self._backends()) - self.own:
            self.backend_cpu.setdefault(pid, 0.0)
        for pid in self.backend_cpu:
            seconds = _process_cpu(pid) if self.proc_readable else None
            if seconds is not None:  # None: gone (keep its last reading), or not ours to read
                self.backend_cpu[pid] = seconds
        try:
            self.worker_cpu = cpu_seconds(worker_pid)
        except OSError:  # the worker is gone: keep its last reading
            pass

    @property
    def database(self) -> str:
        return self.url.rsplit("/", 1)[1]

    def end(self) -> None:
        assert self.before is not None
        time.sleep(STATS_FLUSH)
        self.after = self._counters()
        self.cluster_wal = float(self.admin.execute(WAL_SINCE, {"lsn": self.before[1]}).fetchone()[0])
        self.own_wal = self._own_wal()
        self.admin.close()  # drops the slot

    def _keep_wal(self) -> None:
        """A temporary replication slot, held by the admin connection until the WAL is read back: a
        checkpoint during the drain (another database's DROP, say) must not recycle its segments."""
        import psycopg

        try:
            self.admin.execute(KEEP_WAL, {"slot": f"stepwell_bench_work_{os.getpid()}"})
        except psycopg.Error as err:  # no slots to spare: the WAL is most likely still there
            print(f"# pg-work: no replication slot to keep the WAL ({type(err).__name__}: {err})")

    def _own_wal(self) -> list[tuple[str, int, int, int]] | str:
        """Read after the counters, over a connection to the bench database (its transactions are no
        longer counted, and the extension's own WAL comes after the end)."""
        import psycopg

        assert self.before is not None and self.after is not None
        try:
            with psycopg.connect(self.url, autocommit=True) as conn:
                oid = conn.execute("SELECT oid FROM pg_database WHERE datname = current_database()").fetchone()
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
                params = {"start": self.before[1], "end": self.after[1], "relations": f"% rel %/{oid[0]}/%"}
                kinds = conn.execute(OWN_WAL, params).fetchall()
        except psycopg.Error as err:
            return f"n/a ({type(err).__name__})"
        return [(str(kind), int(records), int(size), int(fpi)) for kind, records, size, fpi in kinds]

    def _backends(self) -> list[int]:
        return [int(row[0]) for row in self.admin.execute(BACKENDS, {"db": self.database}).fetchall()]

    def _counters(self) -> tuple[int, str]:
        self.admin.execute("SELECT pg_stat_clear_snapshot()")
        commits, lsn = self.admin.execute(COUNTERS, {"db": self.database}).fetchone()
        return int(commits or 0), str(lsn)

    def _idle_wal_rate(self, seconds: float = 1.0) -> float:
        """WAL bytes per second the cluster writes while this bench is idle: the other traffic on it."""
        lsn = self._counters()[1]
        time.sleep(seconds)
        return float(self.admin.execute(WAL_SINCE, {"lsn": lsn}).fetchone()[0]) / seconds


def _process_cpu(pid: int) -> float | None:
    """CPU seconds of a server process; None when /proc has no such process (it ended, or the server
    runs on another host or in another namespace: then the admin backend's own pid is unreadable too)."""
    try:
        return cpu_seconds(pid)
    except OSError:
        return None


def pg_work(quick: bool) -> None:
    title = "PostgreSQL: database work per no-op run (what decides scale-out)"
    if not postgres_store_ready():
        not_ready(title)
        return
    n = 300 if quick else 20_000
    rows: list[list[object]] = []
    idle_wal: list[float] = []
    kinds: list[list[object]] = []
    for label, function, concurrency in CASES:
        with pg_database("work") as url:
            meter = PgWorkMeter(url)
            result = drain_with_workers(url, n, function=function, concurrency=concurrency, meter=meter)
            rows.append(_row(label, n, result.drain.rate, result.polls, meter))
            idle_wal.append(meter.idle_wal_per_s)
            if not isinstance(meter.own_wal, str):
                kinds += [[label, kind, records / n, size / n, fpi / n] for kind, records, size, fpi in meter.own_wal]
    table(
        f"{title}: {n:,} pre-loaded runs, one `stepwell worker` process "
        f"(targets, batched: <= {COMMITS_TARGET} commits and <= {WAL_TARGET:,} WAL bytes per run)",
        HEADERS,
        rows,
        note="commits: pg_stat_database.xact_commit of the bench database, worker start to stop, less the bench's"
        " own polls.\nWAL, records, FPI (records with a full-page image): the bench database's own WAL from worker"
        " start to stop, read back\nwith pg_walinspect (records on its relations, and its transactions' commit"
        " records). cluster WAL: the pg_current_wal_flush_lsn()\ndifference, which is CLUSTER-WIDE: other traffic on"
        " this PostgreSQL counts too (while idle before each drain the cluster wrote"
        f" {', '.join(f'{rate / 1024:,.1f}' for rate in idle_wal)} KiB/s)."
        "\nserver CPU: utime+stime (/proc/<pid>/stat) of the client"
        " backends that served the worker (walwriter, checkpointer, autovacuum not counted).\nworker CPU: the"
        " worker process, start-up included. runs/s from the runs' own timestamps. CPU is counted in clock ticks"
        " (10 ms):\ncoarse for a --quick drain.",
    )
    table(
        "Where the WAL goes: the bench database's records per run, by resource manager and record type",
        ["settings", "record", "records/run", "bytes/run", "FPI/run"],
        kinds,
        note="Heap: table rows (INSERT, HOT_UPDATE, UPDATE, LOCK); Btree: index entries; Transaction: COMMIT.",
    )


def _row(label: str, n: int, rate: float, polls: int, meter: PgWorkMeter) -> list[object]:
    assert meter.before is not None and meter.after is not None
    commits = meter.after[0] - meter.before[0] - polls - 1  # less the bench's polls, and its check before them
    if isinstance(meter.own_wal, str):
        wal: list[object] = [meter.own_wal, "", ""]
    else:
        wal = [sum(kind[i] for kind in meter.own_wal) / n for i in (2, 1, 3)]
    # Without /proc access to the server (another host, another namespace) there is no per-backend CPU
    # to read; pg_stat_statements' times would need the extension preloaded, so say so instead.
    server: object = sum(meter.backend_cpu.values()) * 1e6 / n if meter.proc_readable else "n/a (no /proc)"
    return [label, rate, commits / n, *wal, meter.cluster_wal / n, server, meter.worker_cpu * 1e6 / n,
            len(meter.backend_cpu)]  # fmt: skip
