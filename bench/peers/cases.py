"""Each peer: how to load a no-op backlog, the worker command, a cheap "jobs left" count, and clean-up.

PostgreSQL peers get a database of their own, created and dropped here. Redis peers use db 9
(STEPWELL_BENCH_REDIS_URL) and delete only the keys under their own prefix.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import importlib.util
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from bench.common import REDIS_URL, PgCount, pg_database

URL_ENV = "STEPWELL_BENCH_PEER_URL"


@dataclass
class Prepared:
    argv: list[str]
    remaining: Callable[[], int]
    env: dict[str, str] = field(default_factory=dict)
    enqueue_rate: float = float("nan")  # jobs/s while loading the backlog (bulk where the peer has it)


@dataclass(frozen=True)
class PeerCase:
    peer: str  # the package
    settings: str
    prepare: Callable[[int], contextlib.AbstractContextManager[Prepared]]

    @property
    def installed(self) -> bool:
        return importlib.util.find_spec(self.peer) is not None

    @property
    def label(self) -> str:
        return f"{self.peer} {importlib.metadata.version(self.peer)}" if self.installed else self.peer


def _chunks(n: int, size: int = 1000) -> Iterator[range]:
    for start in range(0, n, size):
        yield range(start, min(n, start + size))


# pgqueuer


def pgqueuer(batch_size: int) -> Callable[[int], contextlib.AbstractContextManager[Prepared]]:
    @contextlib.contextmanager
    def prepare(n: int) -> Iterator[Prepared]:
        with pg_database("pgqueuer") as url:
            rate = asyncio.run(_pgqueuer_load(url, n))
            count = PgCount(url, "SELECT count(*) FROM pgqueuer")
            try:
                argv = [sys.executable, "-m", "bench.peers.pgqueuer_worker", str(batch_size)]
                yield Prepared(argv, count, {URL_ENV: url}, rate)
            finally:
                count.close()

    return prepare


async def _pgqueuer_load(url: str, n: int) -> float:
    import psycopg
    from pgqueuer import PsycopgDriver, Queries

    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    queries = Queries(PsycopgDriver(conn))
    await queries.install()
    begun = time.perf_counter()
    for chunk in _chunks(n):
        await queries.enqueue(["noop"] * len(chunk), [None] * len(chunk), [0] * len(chunk))
    rate = n / (time.perf_counter() - begun)
    await conn.close()
    return rate


# procrastinate


def procrastinate(concurrency: int) -> Callable[[int], contextlib.AbstractContextManager[Prepared]]:
    @contextlib.contextmanager
    def prepare(n: int) -> Iterator[Prepared]:
        with pg_database("procrastinate") as url:
            rate = asyncio.run(_procrastinate_load(url, n))
            count = PgCount(url, "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')")
            try:
                argv = [sys.executable, "-m", "procrastinate", "--app=bench.peers.procrastinate_app.app"]
                argv += ["worker", f"--concurrency={concurrency}"]
                yield Prepared(argv, count, {URL_ENV: url}, rate)
            finally:
                count.close()

    return prepare


async def _procrastinate_load(url: str, n: int) -> float:
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))
    noop = app.task(name="noop")(_procrastinate_noop)
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        begun = time.perf_counter()
        for chunk in _chunks(n):
            await noop.batch_defer_async(*({"i": i} for i in chunk))
        return n / (time.perf_counter() - begun)


async def _procrastinate_noop(i: int) -> None:
    return None


# celery and dramatiq, on Redis


@contextlib.contextmanager
def _redis_keys(prefix: str) -> Iterator[object]:
    """A Redis client; every key under `prefix` is deleted before and after (nothing else is touched)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)

    def clear() -> None:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])

    clear()
    try:
        yield client
    finally:
        clear()
        client.close()


@contextlib.contextmanager
def celery_default(n: int) -> Iterator[Prepared]:
    from bench.peers import celery_app

    with _redis_keys(celery_app.PREFIX) as client:
        begun = time.perf_counter()
        with celery_app.app.producer_or_acquire() as producer:
            for i in range(n):
                celery_app.noop.apply_async((i,), producer=producer)
        rate = n / (time.perf_counter() - begun)
        queue, unacked = celery_app.PREFIX + celery_app.QUEUE, celery_app.PREFIX + "unacked"

        def remaining() -> int:
            return int(client.llen(queue)) + int(client.hlen(unacked))  # type: ignore[attr-defined]

        argv = [sys.executable, "-m", "celery", "-A", "bench.peers.celery_app", "worker"]
        argv += ["-Q", celery_app.QUEUE, "--loglevel=WARNING"]
        yield Prepared(argv, remaining, {}, rate)


def dramatiq(processes: int, threads: int) -> Callable[[int], contextlib.AbstractContextManager[Prepared]]:
    @contextlib.contextmanager
    def prepare(n: int) -> Iterator[Prepared]:
        from bench.peers import dramatiq_app

        with _redis_keys(dramatiq_app.NAMESPACE) as client:
            begun = time.perf_counter()
            for i in range(n):
                dramatiq_app.noop.send(i)
            rate = n / (time.perf_counter() - begun)
            messages = f"{dramatiq_app.NAMESPACE}:default.msgs"  # removed when acknowledged, after the actor ran

            def remaining() -> int:
                return int(client.hlen(messages))  # type: ignore[attr-defined]

            argv = [sys.executable, "-m", "dramatiq", "bench.peers.dramatiq_app"]
            argv += ["--processes", str(processes), "--threads", str(threads)]
            yield Prepared(argv, remaining, {}, rate)

    return prepare


CASES = [
    PeerCase("pgqueuer", "batch_size=10 (default)", pgqueuer(10)),
    PeerCase("pgqueuer", "batch_size=100", pgqueuer(100)),
    PeerCase("procrastinate", "concurrency=1 (default)", procrastinate(1)),
    PeerCase("procrastinate", "concurrency=10", procrastinate(10)),
    PeerCase("celery", "prefork, 2 children (default), Redis", celery_default),
    PeerCase("dramatiq", "1 process x 8 threads (default threads), Redis", dramatiq(1, 8)),
]
