"""Flow control on the virtual clock: ordering keys, concurrency, throttle, rate limit, debounce,
batch, priority, idempotency, timeouts, cancel_on, and why a run is waiting."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest

import stepwell
from stepwell.errors import ConfigurationError
from stepwell.model.records import Disposition, RunStatus
from stepwell.store.base import Complete
from stepwell.testing import TestEnv
from tests.conftest import EnvFactory

LEASE = timedelta(seconds=30)


def _claim(env: TestEnv, limit: int = 100) -> list[str]:
    """What a worker would start now, by the run's event data."""
    claimed = env.store.claim_runs(worker_id="w", limit=limit, lease=LEASE)
    env._claimed = getattr(env, "_claimed", {})  # type: ignore[attr-defined]
    for c in claimed:
        env._claimed[c.run_id] = c  # type: ignore[attr-defined]
    return [str(c.event.data.get("n", c.event.data)) for c in claimed]


def _complete(env: TestEnv, n: int) -> None:
    claimed = env._claimed  # type: ignore[attr-defined]
    [run] = [c for c in claimed.values() if c.event.data.get("n") == n]
    assert env.store.settle_runs([Complete(run.lease, b"null")]) == []


def _ordered_app(**options: object) -> stepwell.App:
    app = stepwell.App("t")

    @app.function("ordered", trigger=stepwell.on_event("item"), ordering_key="event.data.key", retries=0, **options)  # type: ignore[arg-type]
    def ordered(ctx: stepwell.Context) -> object:
        if ctx.event.data.get("poison"):
            raise ValueError("poison")
        return ctx.event.data["n"]

    return app


def test_one_run_per_key_at_a_time_in_event_order(test_env: EnvFactory) -> None:
    app = _ordered_app()
    with test_env(app) as env:
        for n, key in [(1, "a"), (2, "a"), (3, "b"), (4, "a"), (5, "b")]:
            env.send("item", {"key": key, "n": n})
        assert sorted(_claim(env)) == ["1", "3"]
        second = next(r for r in app.runs(function="ordered") if r.ordering_key == "a" and r.status == "queued")
        assert "ordering key a busy with run" in (app.get_run(second.id).waiting_reason or "")
        _complete(env, 1)
        assert _claim(env) == ["2"]
        _complete(env, 3)
        _complete(env, 2)
        assert sorted(_claim(env)) == ["4", "5"]


def test_a_failing_run_holds_back_only_its_key_then_the_key_skips_past_it(test_env: EnvFactory) -> None:
    app = _ordered_app()
    with test_env(app) as env:
        env.send("item", {"key": "a", "n": 1, "poison": True})
        env.send("item", {"key": "a", "n": 2})
        env.send("item", {"key": "b", "n": 3})
        env.run_until_idle()
        runs = {r.output: r for r in app.runs(function="ordered")}
        assert runs[2].status == runs[3].status == RunStatus.COMPLETED
        [dead] = app.dead_letters()
        assert (dead.ordering_key, dead.key_policy) == ("a", "skipped")


def test_a_parked_key_waits_for_its_dead_letter_while_other_keys_flow(test_env: EnvFactory) -> None:
    app = _ordered_app(on_dead_letter="park")
    with test_env(app) as env:
        env.send("item", {"key": "a", "n": 1, "poison": True})
        env.send("item", {"key": "a", "n": 2})
        env.send("item", {"key": "b", "n": 3})
        env.run_until_idle()
        statuses = {r.id: r.status for r in app.runs(function="ordered")}
        assert sorted(s.value for s in statuses.values()) == ["completed", "failed", "queued"]
        [dead] = app.dead_letters()
        assert dead.key_policy == "parked"
        waiting = next(r for r in app.runs(function="ordered") if r.status == "queued")
        assert f"parked behind dead letter {dead.run_id}" in (app.get_run(waiting.id).waiting_reason or "")
        assert app.skip_key("ordered", "a") == waiting.id
        env.run_until_idle()
        assert app.get_run(waiting.id).status == RunStatus.COMPLETED


def test_redriving_a_parked_dead_letter_lets_the_key_continue_in_order(test_env: EnvFactory) -> None:
    app = stepwell.App("t")
    fixed = {"yes": False}
    order: list[int] = []

    @app.function(
        "ordered", trigger=stepwell.on_event("item"), ordering_key="event.data.key", retries=0, on_dead_letter="park"
    )
    def ordered(ctx: stepwell.Context) -> None:
        if ctx.event.data["n"] == 1 and not fixed["yes"]:
            raise ValueError("not yet")
        order.append(ctx.event.data["n"])

    with test_env(app) as env:
        for n in (1, 2, 3):
            env.send("item", {"key": "k", "n": n})
        env.run_until_idle()
        assert order == []
        fixed["yes"] = True
        app.redrive(function="ordered")
        env.run_until_idle()
        assert order == [1, 2, 3]


def test_pause_resume_and_drain_one_key(test_env: EnvFactory) -> None:
    app = _ordered_app()
    with test_env(app) as env:
        for n, key in [(1, "a"), (2, "a"), (3, "b"), (4, "a")]:
            env.send("item", {"key": key, "n": n})
        app.pause_key("ordered", "a")
        env.run_until_idle()
        assert sorted(r.output for r in app.runs(status="completed")) == [3]
        paused = next(r for r in app.runs(function="ordered") if r.ordering_key == "a")
        assert app.get_run(paused.id).waiting_reason == "ordering key a is paused"
        app.resume_key("ordered", "a")
        assert _claim(env) == ["1"]
        drained = app.drain_key("ordered", "a")
        assert len(drained) == 2
        _complete(env, 1)
        env.run_until_idle()
        assert sorted(r.status.value for r in app.runs(function="ordered")) == [
            "cancelled",
            "cancelled",
            "completed",
            "completed",
        ]


def test_a_hot_key_with_100000_queued_runs_does_not_delay_another_key(test_env: EnvFactory) -> None:
    app = _ordered_app()
    with test_env(app) as env:
        for start in range(0, 100_000, 10_000):
            app.send([{"name": "item", "data": {"key": "hot", "n": start + i}} for i in range(10_000)])
        env.send("item", {"key": "cold", "n": -1})
        assert sorted(_claim(env, limit=2)) == ["-1", "0"]


def test_concurrency_limits_global_and_keyed_and_slots_return_on_lease_expiry(test_env: EnvFactory) -> None:
    app = stepwell.App("t")

    @app.function(
        "limited",
        trigger=stepwell.on_event("job"),
        concurrency=[stepwell.Concurrency(limit=3), stepwell.Concurrency(limit=1, key="event.data.user")],
    )
    def limited(ctx: stepwell.Context) -> None:
        return None

    with test_env(app) as env:
        for n, user in [(1, "u1"), (2, "u1"), (3, "u2"), (4, "u3"), (5, "u4")]:
            env.send("job", {"n": n, "user": user})
        assert sorted(_claim(env)) == ["1", "3", "4"]
        held = [app.get_run(r.id) for r in app.runs(status="queued")]
        reasons = sorted(r.waiting_reason or "" for r in held)
        assert reasons == ["concurrency limited#c0[*] at 3/3", "concurrency limited#c1[u1] at 1/1"]
        _complete(env, 3)
        assert _claim(env) == ["5"]
        env.advance(seconds=31)
        assert env.store.rescue_expired_leases() == 3
        again = sorted(_claim(env))
        assert len(again) == 3 and again[1:] == ["4", "5"] and again[0] in ("1", "2"), "every slot came back"


def test_throttle_spaces_out_starts_per_key_and_drops_nothing(test_env: EnvFactory) -> None:
    app = stepwell.App("t")
    starts: list[float] = []

    @app.function(
        "throttled",
        trigger=stepwell.on_event("call"),
        throttle=stepwell.Throttle(limit=2, period="1m", key="event.data.api"),
    )
    def throttled(ctx: stepwell.Context) -> None:
        if ctx.event.data["api"] == "a":
            starts.append((env.clock.now() - start).total_seconds())

    with test_env(app) as env:
        start = env.clock.now()
        for _ in range(5):
            env.send("call", {"api": "a"})
        env.send("call", {"api": "b"})
        assert len(_claim(env)) == 3, "two of api a, and api b's own budget"
        throttled_run = next(r for r in app.runs(status="queued"))
        assert (app.get_run(throttled_run.id).waiting_reason or "").startswith("throttled until")
        for claimed in env._claimed.values():  # type: ignore[attr-defined]
            env.store.settle_runs([Complete(claimed.lease, b"null")])
        starts.extend([0.0, 0.0])
        env.run_until_idle()
        assert starts == [0.0, 0.0, 30.0, 60.0, 90.0]
        assert len(app.runs(status="completed")) == 6


def test_rate_limit_skips_the_excess_and_says_so(test_env: EnvFactory) -> None:
    app = stepwell.App("t")

    @app.function(
        "limited",
        trigger=stepwell.on_event("signup"),
        rate_limit=stepwell.RateLimit(limit=1, period="1h", key="event.data.email"),
    )
    def limited(ctx: stepwell.Context) -> None:
        return None

    with test_env(app) as env:
        first = env.send("signup", {"email": "a@x"})
        second = env.send("signup", {"email": "a@x"})
        other = env.send("signup", {"email": "b@x"})
        assert app.event(second).disposition == Disposition.RATE_LIMITED
        assert app.event(second).skipped == (("limited", "rate_limited", None),)
        assert app.event(first).disposition == app.event(other).disposition == Disposition.STARTED
        env.advance(hours=1)
        assert app.event(env.send("signup", {"email": "a@x"})).disposition == Disposition.STARTED
        assert len(app.runs()) == 3


def test_debounce_runs_once_with_the_last_event_after_a_quiet_period_or_the_max_wait(test_env: EnvFactory) -> None:
    app = stepwell.App("t")
    seen: list[tuple[float, object]] = []

    @app.function(
        "debounced",
        trigger=stepwell.on_event("edit"),
        debounce=stepwell.Debounce(period="5m", key="event.data.doc", max_wait="20m"),
    )
    def debounced(ctx: stepwell.Context) -> None:
        seen.append(((env.clock.now() - start).total_seconds() / 60, ctx.event.data["v"]))

    with test_env(app) as env:
        start = env.clock.now()
        first = env.send("edit", {"doc": 1, "v": 1})
        env.advance(minutes=2)
        env.send("edit", {"doc": 1, "v": 2})
        env.run_until_idle(skip_time=False)
        assert seen == []
        assert app.event(first).disposition == Disposition.DEBOUNCED  # the docs promise it (issue 9)
        assert app.event(first).skipped[0][1] == "debounced"
        env.run_until_idle()
        assert seen == [(7.0, 2)]
        seen.clear()
        start = env.clock.now()
        for v in range(10):
            env.send("edit", {"doc": 1, "v": v})
            env.run_until_idle(skip_time=False)
            env.advance(minutes=4)
        env.run_until_idle()
        assert seen[0] == (20.0, 5), "the max wait forces a run with the latest event"


def test_batch_collects_events_into_one_run(test_env: EnvFactory) -> None:
    app = stepwell.App("t")
    batches: list[list[int]] = []

    @app.function("batched", trigger=stepwell.on_event("row"), batch=stepwell.Batch(size=3, timeout="1m"))
    def batched(ctx: stepwell.Context) -> int:
        batches.append([e.data["n"] for e in ctx.events])
        return len(ctx.events)

    with test_env(app) as env:
        ids = [env.send("row", {"n": n}) for n in range(7)]
        env.run_until_idle(skip_time=False)
        assert batches == [[0, 1, 2], [3, 4, 5]]
        assert app.event(ids[1]).disposition == Disposition.BATCHED
        env.run_until_idle()
        assert batches[-1] == [6]


def test_priority_orders_ready_runs(test_env: EnvFactory) -> None:
    app = stepwell.App("t")

    @app.function("prioritized", trigger=stepwell.on_event("job"), priority="event.data.tier == 'gold' ? 50 : 0")
    def prioritized(ctx: stepwell.Context) -> None:
        return None

    with test_env(app) as env:
        env.send("job", {"n": 1, "tier": "free"})
        env.send("job", {"n": 2, "tier": "gold"})
        env.send("job", {"n": 3, "tier": "free"})
        assert _claim(env, limit=1) == ["2"]


def test_idempotency_key_starts_one_run_per_key_per_day(test_env: EnvFactory) -> None:
    app = stepwell.App("t")

    @app.function("charge", trigger=stepwell.on_event("order"), idempotency="event.data.order_id")
    def charge(ctx: stepwell.Context) -> None:
        return None

    with test_env(app) as env:
        env.send("order", {"order_id": 1})
        repeat = env.send("order", {"order_id": 1})
        env.send("order", {"order_id": 2})
        assert len(app.runs()) == 2
        assert app.event(repeat).disposition == Disposition.DEDUPLICATED
        env.advance(hours=24)
        env.send("order", {"order_id": 1})
        assert len(app.runs()) == 3


def test_a_run_past_its_timeout_is_failed_and_dead_lettered(test_env: EnvFactory) -> None:
    app = stepwell.App("t")

    @app.function("slow", trigger=stepwell.on_event("go"), timeout="1h")
    def slow(ctx: stepwell.Context) -> None:
        ctx.step.sleep("nap", "2h")

    with test_env(app) as env:
        env.send("go")
        env.run_until_idle(skip_time=False)
        env.advance(hours=1, seconds=1)
        assert env.store.fail_overdue_runs() == 1
        [dead] = app.dead_letters()
        assert dead.reason == "timed_out"


def test_a_step_past_its_step_timeout_fails_the_attempt(test_env: EnvFactory) -> None:
    app = stepwell.App("t")
    import time

    @app.function("stuck", trigger=stepwell.on_event("go"), step_timeout=0.2, retries=1)
    def stuck(ctx: stepwell.Context) -> str:
        return ctx.step.run("call", lambda: time.sleep(0.3 if ctx.attempt == 1 else 0) or "ok")

    with test_env(app) as env:
        env.send("go")
        env.run_until_idle()
        run = app.get_run(app.runs()[0].id)
        assert run.output == "ok" and run.errors[0].type == "StepTimeout"


def test_cancel_on_cancels_a_matching_run_only(test_env: EnvFactory) -> None:
    app = stepwell.App("t")

    @app.function(
        "reminder",
        trigger=stepwell.on_event("cart.abandoned"),
        cancel_on=stepwell.CancelOn(event="order.placed", match="data.cart"),
    )
    def reminder(ctx: stepwell.Context) -> None:
        ctx.step.sleep("wait", "1d")

    with test_env(app) as env:
        env.send("cart.abandoned", {"cart": 1})
        env.send("cart.abandoned", {"cart": 2})
        env.run_until_idle(skip_time=False)
        env.send("order.placed", {"cart": 1})
        env.run_until_idle()
        assert sorted(r.status.value for r in app.runs()) == ["cancelled", "completed"]


def test_bulk_cancel_by_function(test_env: EnvFactory) -> None:
    app = _ordered_app()
    with test_env(app) as env:
        for n in range(5):
            env.send("item", {"key": "a", "n": n})
        assert len(app.cancel_runs(function="ordered")) == 5
        with pytest.raises(ConfigurationError, match="refusing"):
            app.cancel_runs()


def test_a_concurrency_limit_must_be_positive() -> None:
    with pytest.raises(ConfigurationError, match=r"Concurrency\.limit: 0 must be an int"):
        stepwell.Concurrency(limit=0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"ordering_key": "event.data."}, "ordering_key: invalid CEL 'event.data.' at line 1, column"),
        ({"concurrency": [stepwell.Concurrency(limit=1)] * 5}, "at most 4 limits"),
        ({"on_dead_letter": "park"}, "needs an ordering_key"),
        ({"throttle": "10/m"}, "expected stepwell.Throttle"),
        ({"timeout": "soon"}, "timeout"),
    ],
)
def test_invalid_flow_options_are_refused_at_registration(options: dict[str, object], message: str) -> None:
    app = stepwell.App("t")
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        app.function("f", **options)  # type: ignore[arg-type]


def test_direct_enqueue_goes_through_the_function_flow_control(test_env: EnvFactory) -> None:
    app = stepwell.App("t")

    @app.function(
        "keyed",
        ordering_key="event.data.key",
        idempotency="event.data.id",
        rate_limit=stepwell.RateLimit(limit=3, period="1h"),
    )
    def keyed(ctx: stepwell.Context) -> None:
        return None

    with test_env(app) as env:
        first = keyed.enqueue({"key": "a", "id": 1})
        second = keyed.enqueue({"key": "a", "id": 2})
        assert keyed.enqueue({"key": "a", "id": 1}) == first, "the idempotency key is held by the first run"
        assert app.get_run(second).waiting_reason == f"ordering key a busy with run {first}"
        keyed.enqueue({"key": "b", "id": 3})
        with pytest.raises(stepwell.StepwellError, match="rate limit"):
            keyed.enqueue({"key": "c", "id": 4})
        env.run_until_idle()
        assert len(app.runs(status="completed")) == 3


def test_an_event_does_not_cancel_the_run_it_starts(test_env: EnvFactory) -> None:
    app = stepwell.App("t")

    @app.function(
        "watch",
        trigger=stepwell.on_event("order.updated"),
        cancel_on=stepwell.CancelOn(event="order.updated", match="data.order"),
    )
    def watch(ctx: stepwell.Context) -> None:
        ctx.step.sleep("wait", "1h")

    with test_env(app) as env:
        env.send("order.updated", {"order": 1})
        env.run_until_idle(skip_time=False)
        [first] = app.runs()
        assert first.status == RunStatus.SLEEPING, "its own event did not cancel it"
        env.send("order.updated", {"order": 1})
        assert app.get_run(first.id).status == RunStatus.CANCELLED, "a later matching event does"
        assert len(app.runs(status="queued")) == 1


KEYED_OPTIONS: dict[str, dict[str, Any]] = {
    "ordering_key": {"ordering_key": "event.data.k"},
    "concurrency key": {"concurrency": [stepwell.Concurrency(limit=1, key="event.data.k")]},
    "throttle key": {"throttle": stepwell.Throttle(limit=10, period="1m", key="event.data.k")},
    "rate_limit key": {"rate_limit": stepwell.RateLimit(limit=1, period="1h", key="event.data.k")},
    "debounce key": {"debounce": stepwell.Debounce(period="5m", key="event.data.k")},
    "batch key": {"batch": stepwell.Batch(size=10, timeout="10s", key="event.data.k")},
    "idempotency key": {"idempotency": "event.data.k"},
}


@pytest.mark.parametrize("option", list(KEYED_OPTIONS))
def test_a_key_longer_than_512_bytes_is_refused_naming_the_function_and_the_expression(
    test_env: EnvFactory, option: str
) -> None:
    app = stepwell.App("t")

    @app.function("keyed", trigger=stepwell.on_event("go"), **KEYED_OPTIONS[option])
    def keyed(ctx: stepwell.Context) -> None: ...

    with test_env(app) as env:
        env.send("go", {"k": "é" * 256})  # 512 bytes in UTF-8: at the limit
        with pytest.raises(stepwell.EventRejected) as refused:
            env.send("go", {"k": "é" * 256 + "x"}, id="too-long")
        assert f"function 'keyed': its {option} 'event.data.k' evaluated to a key of 513 bytes" in str(refused.value)
        assert "nothing was stored" in str(refused.value)
        with pytest.raises(stepwell.EventNotFound):
            app.event("too-long")
        assert len(app.runs()) == 1
