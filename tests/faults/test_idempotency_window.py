"""The event-id idempotency window (RELIABILITY 4), on every store.

Inside the window a repeated id returns the same event and starts nothing more; the window is
the event's retention (7 days by default, so at least 24 hours). After the retention purge the
documented behaviour holds: the id is forgotten, and a repeat is a new event with a new run.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import stepwell
from stepwell.model.records import Disposition
from stepwell.store.base import Retention
from tests.conftest import EnvFactory


def test_a_repeated_event_id_is_one_event_inside_the_window_and_new_after_retention(test_env: EnvFactory) -> None:
    app = stepwell.App("window")

    @app.function("f", trigger=stepwell.on_event("order.placed"))
    def f(ctx: stepwell.Context[Any]) -> None:
        return None

    with test_env(app) as env:
        assert env.send("order.placed", {"n": 1}, id="order-1") == "order-1"
        env.run_until_idle()
        env.advance(hours=24)  # the promised minimum
        assert env.send("order.placed", {"n": 2}, id="order-1") == "order-1"
        env.advance(days=6, hours=23)  # just inside the default retention of 7 days
        assert env.send("order.placed", {"n": 3}, id="order-1") == "order-1"
        env.run_until_idle()
        [run] = app.runs(function="f")
        assert app.event("order-1").disposition == Disposition.STARTED
        assert app.event("order-1").data == {"n": 1}  # the first one is kept, repeats changed nothing

        env.advance(days=1)
        purged = env.store.purge(Retention())
        assert purged.runs == 1 and purged.events == 1
        assert env.send("order.placed", {"n": 4}, id="order-1") == "order-1"  # forgotten: a new event
        env.run_until_idle()
        [again] = app.runs(function="f")
        assert again.id != run.id
        assert app.event("order-1").data == {"n": 4}


def test_the_window_follows_a_configured_retention(test_env: EnvFactory) -> None:
    app = stepwell.App("window")

    @app.function("f", trigger=stepwell.on_event("ping"))
    def f(ctx: stepwell.Context[Any]) -> None:
        return None

    with test_env(app) as env:
        env.send("ping", id="p-1")
        env.run_until_idle()
        env.advance(days=2)
        assert env.store.purge(Retention(completed=timedelta(days=3))).runs == 0
        env.send("ping", id="p-1")
        env.run_until_idle()
        assert len(app.runs(function="f")) == 1
