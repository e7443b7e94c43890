"""Helpers for the fleet and fault tests: bulk jobs, draining, counting executions per run, PostgreSQL probes.

A job is one run of `fleet-job` (integration_app), started by a `fleet.job` event; each execution of
its one step appends one `job` line to the effects file, so the lines per run count executions.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import psycopg

import stepwell
from stepwell.errors import StoreUnavailable
from tests.conftest import PG_URL
from tests.integration.helpers import Effect, Effects, wait_until
from tests.integration.integration_app import FLEET_EVENT

FUNCTION = "fleet-job"
LABEL = "job"
FULL_SCALE = os.environ.get("STEPWELL_TEST_SCALE", "short") == "full"


def scaled(short: int, full: int) -> int:
    """The size of a fleet scenario: `short` in CI, `full` (RELIABILITY.md's figure) with
    STEPWELL_TEST_SCALE=full, which takes many minutes on a 2-core machine."""
    return full if FULL_SCALE else short


def send_jobs(client: stepwell.App, count: int, *, hold: float | None = None, chunk: int = 5000) -> list[str]:
    """`count` fleet.job events through the bulk API, in batches of `chunk`; returns the event ids."""
    data: dict[str, object] = {"hold": {LABEL: hold}} if hold else {}
    ids: list[str] = []
    for start in range(0, count, chunk):
        batch = [{"name": FLEET_EVENT, "data": {"n": n, **data}} for n in range(start, min(count, start + chunk))]
        ids += client.send(batch)
    return ids


def executions(effects: Effects) -> dict[str, list[Effect]]:
    """Per run id, its job executions in the order they were recorded."""
    per_run: dict[str, list[Effect]] = {}
    for effect in effects.all():
        if effect.label == LABEL:
            per_run.setdefault(effect.run_id, []).append(effect)
    return per_run


def count_effects(effects: Effects) -> int:
    if not effects.path.exists():
        return 0
    with effects.path.open("rb") as file:
        return sum(1 for _ in file)


def wait_for_effects(effects: Effects, count: int, *, timeout: float) -> None:
    wait_until(lambda: count_effects(effects) >= count, timeout=timeout, what=f"{count} executions", interval=0.05)


def wait_drained(client: stepwell.App, *, timeout: float) -> None:
    """Until nothing is ready, scheduled or running; tolerates the store being away meanwhile."""

    def drained() -> bool:
        try:
            stats = client.store.queue_stats()
        except StoreUnavailable:
            return False
        return stats.ready == stats.scheduled == stats.running == 0

    wait_until(drained, timeout=timeout, what="the queue to drain", interval=0.25)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the store and the effects file say about one batch of jobs, once drained."""

    statuses: Counter[str]
    runs: int
    events: int
    per_run: dict[str, list[Effect]]
    unknown_runs: set[str]  # executed, but not a run of the sent events
    never_ran: set[str]  # a run of the sent events without any execution

    @property
    def lines(self) -> int:
        return sum(len(found) for found in self.per_run.values())

    @property
    def repeated(self) -> dict[str, list[Effect]]:
        return {run_id: found for run_id, found in self.per_run.items() if len(found) > 1}

    def by_pid(self) -> Counter[int]:
        return Counter(e.pid for found in self.per_run.values() for e in found)


def outcome(client: stepwell.App, effects: Effects, event_ids: list[str]) -> Outcome:
    runs = client.runs(function=FUNCTION, limit=2 * len(event_ids) + 100)
    run_ids = {run.id for run in runs}
    per_run = executions(effects)
    return Outcome(
        statuses=Counter(run.status.value for run in runs),
        runs=len(runs),
        events=len({run.event_id for run in runs} & set(event_ids)),
        per_run=per_run,
        unknown_runs=set(per_run) - run_ids,
        never_ran=run_ids - set(per_run),
    )


def assert_every_job_completed(result: Outcome, count: int) -> None:
    """Every sent event has exactly one run, every run completed, every run executed."""
    assert result.runs == result.events == count, (result.runs, result.events)
    assert result.statuses == Counter({"completed": count}), result.statuses
    assert not result.never_ran, f"{len(result.never_ran)} runs never executed"
    assert not result.unknown_runs, f"{len(result.unknown_runs)} executions of unknown runs"


# PostgreSQL


def pg_connect(url: str = PG_URL) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(url, autocommit=True, connect_timeout=5)


def wait_for_postgres(timeout: float) -> float:
    """Until the server accepts connections and answers; returns the seconds waited."""
    started = time.monotonic()

    def answers() -> bool:
        try:
            with pg_connect() as conn:
                conn.execute("SELECT 1")
        except psycopg.OperationalError:
            return False
        return True

    wait_until(answers, timeout=timeout, what="PostgreSQL to accept connections", interval=0.1)
    return time.monotonic() - started


def stale_leases(url: str) -> int:
    """Runs 'running' without a live lease (by the database clock), in the URL's schema."""
    with pg_connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM runs WHERE status = 'running'"
            " AND (lease_token IS NULL OR lease_expires_at IS NULL OR lease_expires_at <= now())"
        ).fetchone()
    assert row is not None and isinstance(row[0], int)
    return row[0]


@dataclass
class ConnectionSampler:
    """Samples pg_stat_activity in a thread: how many backends carry one of `application_names`."""

    application_names: list[str]
    interval: float = 0.05
    samples: list[int] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def count(self, conn: psycopg.Connection[tuple[object, ...]]) -> int:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = ANY(%s)", [self.application_names]
        ).fetchone()
        assert row is not None and isinstance(row[0], int)
        return row[0]

    @contextmanager
    def running(self) -> Iterator[ConnectionSampler]:
        thread = threading.Thread(target=self._loop, name="connection-sampler", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(10)

    def _loop(self) -> None:
        with pg_connect() as conn:
            while not self._stop.is_set():
                self.samples.append(self.count(conn))
                self._stop.wait(self.interval)

    @property
    def peak(self) -> int:
        return max(self.samples, default=0)
