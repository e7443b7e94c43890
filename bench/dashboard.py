"""`python -m bench dashboard`: every dashboard page's server time over 1,000,000 runs and 100,000
dead letters, on SQLite and PostgreSQL (the issue's bar: under 300 ms of server time each).

The data is seeded with bulk SQL (a few real rows made by the App, copied by INSERT ... SELECT),
so the seed takes seconds, not the hours a million real runs would: varied durations (for p50/p95),
an input with a field to search (`data.n`), a fan-out with children and many without. Each page is
loaded LOADS times after a warm-up; the figure is the page's own `Server-Timing` (no network in it),
median and p95. `--quick` seeds 2,000 runs; `--runs N --dead-letters M` any size between.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import httpx

import stepwell
from bench.common import median, pg_database, scratch_dir, table
from stepwell.http import ServerThread

FUNCTIONS = 20
KEYS = 1000
FAN_OUTS = 1000  # seeded fan-out rows besides parent-1's (whose children are every 100th run)
LOADS = 20  # timed loads per page (5 with --quick)
PAGES = [
    "/runs", "/runs?function=fn7", "/runs?status=failed", "/runs?key=key-42", "/runs?parent=parent-1",
    "/runs?since=2029-12-31T00:00:00", "/runs?payload=data.n+%3D+7", "/runs?function=fn7&payload=data.n+%3D+7",
    "/dead-letters", "/dead-letters?function=fn3", "/functions", "/queue", "/keys", "/audit", "/events",
    "/fan-outs",
]  # fmt: skip


def make_app(url: str) -> stepwell.App:
    app = stepwell.App("bench-dashboard", database_url=url)

    @app.function("template", trigger=stepwell.on_event("bench.template"), retries=0)
    def template(ctx: stepwell.Context) -> int:
        if ctx.event.data.get("fail"):
            raise ValueError("seeded failure")
        return 1

    return app


def _templates(app: stepwell.App) -> None:
    """One completed and one dead-lettered run, made by the App: the rows the seed copies."""
    import asyncio

    from stepwell.runtime.worker import WorkerOptions

    app.register()
    app.send("bench.template", {"fail": False})
    app.send("bench.template", {"fail": True})

    async def drain() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(app.worker(WorkerOptions(poll_interval=0.01)).run(stop))
        while any(not run.status.is_terminal for run in await asyncio.to_thread(app.runs)):
            await asyncio.sleep(0.02)
        stop.set()
        await task

    asyncio.run(drain())


# Column overrides of the copied rows; every other column is the template's.
def _run_columns(number: str, now_expr: str, took_expr: str, mod: str = "%") -> dict[str, str]:
    """`mod`: the modulo operator as the driver needs it written (psycopg: %%); `took_expr`: the run's
    duration, added to its creation time for its end."""
    return {
        "id": "'s' || lpad_id", "function": f"'fn' || ({number} {mod} {FUNCTIONS})",
        "status": f"CASE WHEN {number} {mod} 10 = 0 THEN 'failed' ELSE 'completed' END",
        "created_at": now_expr, "started_at": now_expr, "ended_at": f"{now_expr} + {took_expr}",
        "input_name": "'bench.seeded'",
        "ordering_key": f"'key-' || ({number} {mod} {KEYS})", "event_id": "NULL",
        "parent_id": f"CASE WHEN {number} {mod} 100 = 1 THEN 'parent-1' ELSE NULL END", "child_index": number,
        "parent_step": f"CASE WHEN {number} {mod} 100 = 1 THEN 'kids' ELSE NULL END",
    }  # fmt: skip


def seed_sqlite(path: str, runs: int, dead: int) -> None:
    conn = sqlite3.connect(path)
    columns = [row[1] for row in conn.execute("PRAGMA table_info(runs)")]
    over = _run_columns("n.i", "t.created_at - n.i * 1000", "(n.i % 997) * 1000")
    over["id"] = "printf('s%031d', n.i)"
    over["input"] = "CAST('{\"n\": ' || (n.i % 1000) || '}' AS BLOB)"
    select = ", ".join(over.get(column, f"t.{column}") for column in columns)
    with conn:
        conn.execute(
            f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
            f"INSERT INTO runs ({', '.join(columns)}) SELECT {select} FROM n, "
            f"(SELECT * FROM runs WHERE status = 'completed' LIMIT 1) t",
            (runs,),
        )
        _seed_dead_letters(conn, dead, [row[1] for row in conn.execute("PRAGMA table_info(dead_letters)")], "?")
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
            "INSERT INTO fan_outs (parent_id, step_id, function, total, tolerate, created_at, done_at) "
            "SELECT printf('fan-%06d', i), 'kids', 'fn1', 0, 0, (SELECT max(created_at) FROM runs) - i * 1000, NULL "
            "FROM n",
            (FAN_OUTS,),
        )
        conn.execute(
            "INSERT INTO fan_outs (parent_id, step_id, function, total, tolerate, created_at) "
            "SELECT 'parent-1', 'kids', 'fn1', count(*), 0.1, max(created_at) FROM runs WHERE parent_id = 'parent-1'"
        )
        conn.execute("ANALYZE")
    conn.close()


def seed_postgres(url: str, runs: int, dead: int) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        columns = [
            row[0] for row in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'runs' "
                "AND table_schema = current_schema() AND is_identity = 'NO' ORDER BY ordinal_position"
            )
        ]  # fmt: skip
        over = _run_columns(
            "n", "t.created_at - n * interval '1 millisecond'", "(n %% 997) * interval '1 millisecond'", "%%"
        )
        over["id"] = "'s' || lpad(n::text, 31, '0')"
        over["input"] = "convert_to('{\"n\": ' || (n %% 1000) || '}', 'UTF8')"
        select = ", ".join(over.get(column, f"t.{column}") for column in columns)
        conn.execute(
            f"INSERT INTO runs ({', '.join(columns)}) SELECT {select} FROM generate_series(1, %s) n, "
            f"(SELECT * FROM runs WHERE status = 'completed' LIMIT 1) t",
            (runs,),
        )  # type: ignore[call-overload]
        dl_columns = [
            row[0] for row in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'dead_letters' "
                "AND table_schema = current_schema() ORDER BY ordinal_position"
            )
        ]  # fmt: skip
        _seed_dead_letters(conn, dead, dl_columns, "%s")
        conn.execute(
            "INSERT INTO fan_outs (parent_id, step_id, function, total, tolerate, created_at, done_at) "
            "SELECT 'fan-' || lpad(i::text, 6, '0'), 'kids', 'fn1', 0, 0, "
            "(SELECT max(created_at) FROM runs) - i * interval '1 millisecond', NULL FROM generate_series(1, %s) i",
            (FAN_OUTS,),
        )
        conn.execute(
            "INSERT INTO fan_outs (parent_id, step_id, function, total, tolerate, created_at) "
            "SELECT 'parent-1', 'kids', 'fn1', count(*), 0.1, max(created_at) FROM runs WHERE parent_id = 'parent-1'"
        )
        conn.execute("ANALYZE")


def _seed_dead_letters(conn: Any, dead: int, columns: list[str], mark: str) -> None:
    over = {"run_id": "r.id", "function": "r.function", "failed_at": "r.created_at", "ordering_key": "r.ordering_key"}
    select = ", ".join(over.get(column, f"t.{column}") for column in columns)
    conn.execute(
        f"INSERT INTO dead_letters ({', '.join(columns)}) SELECT {select} FROM "
        f"(SELECT id, function, created_at, ordering_key FROM runs WHERE status = 'failed' AND substr(id, 1, 1) = 's' "
        f"LIMIT {mark}) r, (SELECT * FROM dead_letters LIMIT 1) t",
        (dead,),
    )


def time_pages(app: stepwell.App, repeat: int = LOADS) -> list[tuple[str, float, float]]:
    """(page, median ms, p95 ms) of every page's server time, over `repeat` loads after a warm-up."""
    [failed] = [letter.run_id for letter in app.dead_letters(limit=1)]
    pages = [*PAGES, f"/runs/{failed}"]
    rows = []
    with ServerThread(app, port=0, auth=False) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        for page in pages:
            client.get(page)  # warm-up (and the dev session's cookie)
            times = []
            for _ in range(repeat):
                response = client.get(page)
                assert response.status_code == 200, (page, response.status_code, response.text[:300])
                assert "payload" not in page or "match" in response.text, "the payload search read nothing"
                times.append(_server_ms(response))
            rows.append((page, median(times), _p95(times)))
    return rows


def _server_ms(response: httpx.Response) -> float:
    timing = response.headers["server-timing"]  # "app;dur=12.3"
    return float(timing.partition("dur=")[2])


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(math.ceil(0.95 * len(ordered)) - 1, 0)]  # nearest rank


def _measure(
    backend: str, url: str, runs: int, dead: int, seed: Callable[[str, int, int], None], target: str, loads: int
) -> None:
    app = make_app(url)
    _templates(app)
    begun = time.perf_counter()
    seed(target, runs, dead)
    took = time.perf_counter() - begun
    rows = time_pages(app, loads)
    app.close()
    table(
        f"{backend}: {runs:,} runs, {dead:,} dead letters (seeded in {took:.1f}s; server time over {loads} loads)",
        ["page", "median ms", "p95 ms", "under 300 ms"],
        [(page, round(mid, 1), round(p95, 1), "yes" if p95 < 300 else "NO") for page, mid, p95 in rows],
    )


def dashboard(quick: bool, runs: int | None = None, dead: int | None = None) -> None:
    """`runs`/`dead`: a size of your choosing (e.g. 20,000 to check the benchmark on a laptop)."""
    sizes = (2_000, 100) if quick else (1_000_000, 100_000)
    runs, dead = runs or sizes[0], dead if dead is not None else (sizes[1] if runs is None else runs // 10)
    loads = 5 if quick else LOADS
    with scratch_dir() as folder:
        path = str(folder / "dashboard.db")
        _measure("SQLite", f"sqlite:///{path}", runs, dead, seed_sqlite, path, loads)
    with pg_database("dashboard") as url:
        _measure("PostgreSQL", url, runs, dead, seed_postgres, url, loads)
