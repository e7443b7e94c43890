"""The worker's local lease deadlines (RELIABILITY 13a) and the lease token user code sees."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import stepwell
from stepwell.runtime.deadlines import LeaseDeadlines
from stepwell.testing import TestEnv


class Ticks:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_deadline_is_the_grant_start_plus_the_lease_minus_a_margin() -> None:
    ticks = Ticks()
    deadlines = LeaseDeadlines(timedelta(seconds=30), monotonic=ticks)
    since = deadlines.now()
    ticks.now += 3  # the claim took 3 s to commit: the deadline counts from before it
    deadlines.granted(["r1"], since)
    assert deadlines.remaining("r1") == 30 - 5 - 3  # margin: a sixth of the lease
    ticks.now = since + 24.9
    assert deadlines.alive("r1")
    ticks.now = since + 25
    assert not deadlines.alive("r1")


def test_a_renewal_moves_the_deadline_but_never_revives_a_lost_or_forgotten_run() -> None:
    ticks = Ticks()
    deadlines = LeaseDeadlines(timedelta(seconds=6), monotonic=ticks)
    deadlines.granted(["kept", "lost", "settled"], deadlines.now())
    ticks.now += 4
    deadlines.lost(["lost"])
    deadlines.forget("settled")
    deadlines.renewed(["kept", "lost", "settled"], deadlines.now())
    ticks.now += 4  # past the first deadline (5 s), within the renewed one (9 s)
    assert deadlines.alive("kept")
    assert not deadlines.alive("lost")
    assert deadlines.remaining("settled") is None  # untracked: the worker settled it


def test_a_renewal_that_lands_after_the_deadline_passed_does_not_revive_it() -> None:
    """The database was away: a renewal hung past the deadline, then succeeded. The attempt may
    already have stopped trusting the lease; the next renewal must not hand it back."""
    ticks = Ticks()
    deadlines = LeaseDeadlines(timedelta(seconds=6), monotonic=ticks)
    deadlines.granted(["r1"], deadlines.now())
    stuck_since = deadlines.now()
    ticks.now += 6  # past the deadline (5 s) while the renewal hangs
    deadlines.renewed(["r1"], stuck_since)
    assert not deadlines.alive("r1")
    deadlines.renewed(["r1"], deadlines.now())  # a later renewal succeeds at once
    assert not deadlines.alive("r1")


def test_user_code_sees_the_lease_token_of_its_attempt() -> None:
    app = stepwell.App("t")
    seen: list[Any] = []

    @app.function("fenced", trigger=stepwell.on_event("go"))
    def fenced(ctx: stepwell.Context) -> None:
        seen.append((ctx.fencing_token, ctx.lease))

    with TestEnv(app) as env:
        env.send("go")
        env.run_until_idle()
        [run] = app.runs()
    [(token, lease)] = seen
    assert isinstance(token, str) and len(token) >= 16
    assert lease is not None and lease.token == token and lease.run_id == run.id
