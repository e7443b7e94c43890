"""Cron triggers on the virtual clock: ticks, DST, catch-up after downtime, several schedulers at once."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import stepwell
from stepwell.app import open_store
from stepwell.clock import VirtualClock
from stepwell.errors import ConfigurationError, EventNotFound
from stepwell.model.records import Disposition, RunStatus
from stepwell.runtime.scheduler import Scheduler
from stepwell.runtime.worker import WorkerOptions
from stepwell.store.base import Store
from stepwell.testing import TestEnv

START = datetime(2026, 3, 27, tzinfo=UTC)


def hourly_app() -> tuple[stepwell.App, list[str]]:
    app = stepwell.App("cron")
    seen: list[str] = []

    @app.function("hourly", trigger=stepwell.cron("0 * * * *"))
    def hourly(ctx: stepwell.Context) -> str:
        seen.append(ctx.event.data["scheduled_at"])
        return str(ctx.event.data["scheduled_at"])

    return app, seen


def scheduled(app: stepwell.App, function: str = "hourly") -> list[str]:
    """The ticks of the function's runs, in order; a tick run twice would appear twice."""
    runs = app.runs(function=function, limit=1000)
    return sorted(app.event(run.event_id).data["scheduled_at"] for run in runs if run.event_id)


def test_a_cron_function_runs_at_each_tick_with_a_cron_event() -> None:
    app = stepwell.App("cron")
    events: list[stepwell.Event] = []

    @app.function("nightly", trigger=stepwell.cron("0 3 * * *", tz="Europe/Paris"))
    def nightly(ctx: stepwell.Context) -> None:
        events.append(ctx.event)

    with TestEnv(app, start=START) as env:
        assert env.run_until_idle(until=timedelta(days=2)) == 2
        assert env.clock.now() == START + timedelta(days=2)
        first, second = events
        assert first.name == "stepwell/cron"
        assert first.data == {"cron": "0 3 * * *", "tz": "Europe/Paris", "scheduled_at": "2026-03-27T02:00:00Z"}
        assert first.ts == datetime(2026, 3, 27, 2, tzinfo=UTC)
        assert second.data["scheduled_at"] == "2026-03-28T02:00:00Z"
        assert first.id is not None
        record = app.event(first.id)
        [run] = app.runs(event_id=first.id)
        assert (record.disposition, record.run_ids, run.status) == (Disposition.STARTED, (run.id,), RunStatus.COMPLETED)


def test_a_daily_paris_schedule_across_both_dst_weekends() -> None:
    app = stepwell.App("cron")

    @app.function("early", trigger=stepwell.cron("30 2 * * *", tz="Europe/Paris"))
    def early(ctx: stepwell.Context) -> None:
        pass

    ticks = []
    for start in (datetime(2026, 3, 28, 12, tzinfo=UTC), datetime(2026, 10, 24, 12, tzinfo=UTC)):
        with TestEnv(app, start=start) as env:
            env.run_until_idle(until=timedelta(days=2))
            ticks += scheduled(app, "early")
    assert ticks == [
        "2026-03-29T01:30:00Z",  # 02:30 does not exist that night: 03:30 summer time
        "2026-03-30T00:30:00Z",  # 02:30 summer time
        "2026-10-25T00:30:00Z",  # 02:30 happens twice that night: once, at the first
        "2026-10-26T01:30:00Z",  # 02:30 winter time
    ]


def test_an_hourly_schedule_runs_every_elapsed_hour_through_the_autumn_overlap() -> None:
    app = stepwell.App("cron")

    @app.function("hourly", trigger=stepwell.cron("0 * * * *", tz="Europe/Paris"))
    def hourly(ctx: stepwell.Context) -> None:
        pass

    with TestEnv(app, start=datetime(2026, 10, 24, 23, 30, tzinfo=UTC)) as env:
        env.run_until_idle(until=datetime(2026, 10, 25, 3, 30, tzinfo=UTC))
        # 02:00 summer time, 02:00 winter time, 03:00, 04:00: a run every elapsed hour, one per UTC instant
        assert scheduled(app) == [f"2026-10-25T0{hour}:00:00Z" for hour in range(4)]


def test_an_idle_env_does_not_skip_to_cron_ticks_unless_asked() -> None:
    app, seen = hourly_app()
    with TestEnv(app, start=START) as env:
        assert env.run_until_idle() == 0
        assert env.clock.now() == START
        env.advance(hours=1)
        assert env.run_until_idle() == 1  # the tick that came is due: it runs, and time stays put
        assert env.clock.now() == START + timedelta(hours=1)
        assert seen == ["2026-03-27T01:00:00Z"]


def test_skipping_to_a_sleepers_wake_up_fires_the_cron_ticks_on_the_way() -> None:
    app, seen = hourly_app()

    @app.function("slow", trigger=stepwell.on_event("go"))
    def slow(ctx: stepwell.Context) -> None:
        ctx.step.sleep("nap", "3h30m")

    with TestEnv(app, start=START) as env:
        env.send("go")
        env.run_until_idle()
        assert env.clock.now() == START + timedelta(hours=3, minutes=30)
        assert seen == ["2026-03-27T01:00:00Z", "2026-03-27T02:00:00Z", "2026-03-27T03:00:00Z"]


def test_a_newly_deployed_function_does_not_fire_past_ticks() -> None:
    app = stepwell.App("cron")
    with TestEnv(app, start=START) as env:
        env.advance(minutes=90)

        @app.function("late", trigger=stepwell.cron("0 * * * *"))
        def late(ctx: stepwell.Context) -> None:
            pass

        assert env.run_until_idle() == 0  # 01:00 was before the function existed
        assert env.run_until_idle(until=timedelta(minutes=30)) == 1
        assert scheduled(app, "late") == ["2026-03-27T02:00:00Z"]


def test_after_downtime_two_schedulers_run_only_the_latest_missed_tick_once(tmp_path: Path) -> None:
    """Reliability scenario 25: the engine is down across three ticks, then two schedulers start."""
    app, _ = hourly_app()
    url = f"sqlite:///{tmp_path / 'cron.db'}"
    with TestEnv(app, start=START, database_url=url) as env:
        env.run_until_idle(until=timedelta(hours=1))
        assert scheduled(app) == ["2026-03-27T01:00:00Z"]
        env.advance(hours=3, minutes=30)  # down: 02:00, 03:00 and 04:00 pass with nobody scheduling
        other_process = open_store(url, env.clock)
        try:
            first, second = Scheduler(app.registry, env.store), Scheduler(app.registry, other_process)
            assert first.tick() + second.tick() == 1
            assert first.tick() + second.tick() == 0
        finally:
            other_process.close()
        env.run_until_idle()
        assert scheduled(app) == ["2026-03-27T01:00:00Z", "2026-03-27T04:00:00Z"]
        for skipped in ("2026-03-27T02:00:00Z", "2026-03-27T03:00:00Z"):
            with pytest.raises(EventNotFound):
                app.event(f"cron:hourly@{skipped}")
        env.run_until_idle(until=timedelta(hours=2))
        assert scheduled(app) == [f"2026-03-27T0{hour}:00:00Z" for hour in (1, 4, 5, 6)]


def test_concurrent_schedulers_in_threads_start_exactly_one_run_per_tick(tmp_path: Path) -> None:
    app, _ = hourly_app()
    url = f"sqlite:///{tmp_path / 'cron.db'}"
    with TestEnv(app, start=START, database_url=url) as env:
        stores: list[Store] = [open_store(url, env.clock) for _ in range(4)]
        schedulers = [Scheduler(app.registry, store) for store in stores]
        try:
            for hour in range(1, 6):
                env.clock.set(START + timedelta(hours=hour, seconds=1))
                assert sorted(tick_at_once(schedulers)) == [0, 0, 0, 1], f"tick {hour}"
        finally:
            for store in stores:
                store.close()
        env.run_until_idle()
        assert scheduled(app) == [f"2026-03-27T0{hour}:00:00Z" for hour in range(1, 6)]


def tick_at_once(schedulers: list[Scheduler]) -> list[int]:
    """One pass of every scheduler at the same moment, each in its own thread; the runs each started."""
    started: list[int] = []
    barrier = threading.Barrier(len(schedulers))

    def run(scheduler: Scheduler) -> None:
        barrier.wait()
        started.append(scheduler.tick())

    threads = [threading.Thread(target=run, args=(s,)) for s in schedulers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return started


@pytest.mark.parametrize(
    ("make_trigger", "message"),
    [
        (lambda: stepwell.cron("0 25 * * *"), "field 2 (hour) '25' is not valid"),
        (lambda: stepwell.cron("0 3 * * *", tz="Europe/Pariss"), "unknown time zone tz='Europe/Pariss'"),
        (lambda: "0 3 * * *", "use stepwell.on_event(...) or stepwell.cron(...)"),
    ],
)
def test_an_invalid_cron_trigger_is_refused_at_registration(make_trigger: object, message: str) -> None:
    app = stepwell.App("cron")
    with pytest.raises(ConfigurationError) as raised:

        @app.function("bad", triggers=[make_trigger()])  # type: ignore[operator]
        def bad(ctx: stepwell.Context) -> None:
            pass

    assert message in str(raised.value)
    assert app.registry.names() == [] and app.registry.crons == []


def test_a_worker_fires_cron_ticks_from_its_maintenance_pass(tmp_path: Path) -> None:
    clock = VirtualClock(START)
    app, seen = hourly_app()
    app.use_database(f"sqlite:///{tmp_path / 'worker.db'}")
    app.bind(None, clock)
    Scheduler(app.registry, app.store).tick()  # deployed before: the schedule counts from START
    clock.advance(hours=1, seconds=1)
    running: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
    ready = threading.Event()

    async def main() -> None:
        running.append((asyncio.get_running_loop(), stop := asyncio.Event()))
        ready.set()
        await app.worker(WorkerOptions(rescue_interval=0.05, poll_interval=0.05)).run(stop)

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    try:
        assert ready.wait(10)
        deadline = time.monotonic() + 10
        while not seen and time.monotonic() < deadline:
            time.sleep(0.01)
        assert seen == ["2026-03-27T01:00:00Z"]
    finally:
        if running:
            loop, stop = running[0]
            loop.call_soon_threadsafe(stop.set)
        thread.join(20)
        app.close()
    assert not thread.is_alive()


def test_the_nightly_report_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    from examples import nightly_report

    nightly_report.demo()
    out = capsys.readouterr().out
    assert "report  2026-03-29 01:30 UTC = 03:30 CEST Paris" in out
    assert "report  2026-10-25 00:30 UTC = 02:30 CEST Paris" in out
    assert "['01:00', '04:00']" in out
