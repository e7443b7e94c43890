"""stepwell.testing.TestEnv drives the real worker loop on the virtual clock: what a worker
completes, run_until_idle completes too."""

from __future__ import annotations

from datetime import timedelta

import stepwell
from stepwell.model.records import RunStatus
from tests.conftest import EnvFactory


def _keyed_app(body: str) -> tuple[stepwell.App, list[int]]:
    app = stepwell.App("t")
    attempts: list[int] = []

    @app.function("keyed", trigger=stepwell.on_event("item"), ordering_key="event.data.key", retries=2)
    def keyed(ctx: stepwell.Context) -> int:
        attempts.append(ctx.event.data["n"])
        if body == "sleep":
            ctx.step.sleep("nap", "1h")
        elif ctx.event.data["n"] == 1 and ctx.attempt == 1:
            raise RuntimeError("first attempt fails; the retry waits its backoff")
        return int(ctx.event.data["n"])

    return app, attempts


def test_a_sleeping_head_and_a_queued_run_of_its_key_both_complete(test_env: EnvFactory) -> None:
    app, attempts = _keyed_app("sleep")
    with test_env(app) as env:
        env.send("item", {"key": "a", "n": 1})
        env.send("item", {"key": "a", "n": 2})
        env.run_until_idle()
        runs = app.runs(function="keyed")
        assert sorted(r.status for r in runs) == [RunStatus.COMPLETED, RunStatus.COMPLETED]
        assert attempts == [1, 1, 2, 2]  # each: the attempt that sleeps, then the one that resumes


def test_a_head_waiting_to_retry_and_a_queued_run_of_its_key_both_complete(test_env: EnvFactory) -> None:
    app, attempts = _keyed_app("retry")
    with test_env(app) as env:
        env.send("item", {"key": "a", "n": 1})
        env.send("item", {"key": "a", "n": 2})
        env.run_until_idle()
        assert sorted(r.output for r in app.runs(function="keyed")) == [1, 2]
        assert attempts == [1, 1, 2]


def test_run_timeouts_fire_while_the_env_drains(test_env: EnvFactory) -> None:
    """A worker's maintenance pass fails overdue runs; so does the env's drain."""
    app = stepwell.App("t")

    @app.function("slow", trigger=stepwell.on_event("go"), timeout="1h")
    def slow(ctx: stepwell.Context) -> None:
        ctx.step.sleep("nap", "2h")

    with test_env(app) as env:
        env.send("go")
        env.run_until_idle(until=timedelta(hours=3))
        [dead] = app.dead_letters()
        assert dead.reason == "timed_out"
