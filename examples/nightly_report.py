"""A nightly report on a Paris schedule, and an hourly sync, through both DST changes of 2026.

Run the demo (virtual clock, seconds):   python -m examples.nightly_report
Run it as a worker instead:              stepwell worker examples.nightly_report:app

The demo runs the app under stepwell.testing's virtual clock from March to November: each night
of the spring change and of the autumn change prints when the report ran, in UTC and in Paris.
Then the "engine" goes down for three hours and comes back: the latest missed sync runs once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import stepwell
from stepwell.testing import TestEnv

app = stepwell.App("reports")
PARIS = ZoneInfo("Europe/Paris")


@app.function("nightly-report", trigger=stepwell.cron("30 2 * * *", tz="Europe/Paris"))
def nightly_report(ctx: stepwell.Context) -> dict[str, str]:
    scheduled_at = ctx.event.data["scheduled_at"]
    summary = ctx.step.run("summarize", lambda: {"night_of": scheduled_at[:10]})
    return {"scheduled_at": scheduled_at, **summary}


@app.function("hourly-sync", trigger=stepwell.cron("0 * * * *", tz="Europe/Paris"))
def hourly_sync(ctx: stepwell.Context) -> str:
    return str(ctx.event.data["scheduled_at"])


def ran(function: str) -> list[datetime]:
    ticks = [app.event(run.event_id).ts for run in app.runs(function=function, limit=1000) if run.event_id]
    return sorted(ticks)


def demo() -> None:
    for start in (datetime(2026, 3, 27, 12, tzinfo=UTC), datetime(2026, 10, 23, 12, tzinfo=UTC)):
        with TestEnv(app, start=start) as env:
            env.run_until_idle(until=timedelta(days=4))
            for tick in ran("nightly-report"):
                print(f"report  {tick:%Y-%m-%d %H:%M} UTC = {tick.astimezone(PARIS):%H:%M %Z} Paris")
            print(f"sync    {len(ran('hourly-sync'))} runs in 4 days, one per elapsed hour")
    with TestEnv(app, start=datetime(2026, 6, 1, tzinfo=UTC)) as env:
        env.run_until_idle(until=timedelta(hours=1))
        env.advance(hours=3, minutes=30)  # down: three ticks pass with nobody scheduling
        env.run_until_idle()
        missed = [f"{tick:%H:%M}" for tick in ran("hourly-sync")]
        print(f"after 3h of downtime the syncs that ran are {missed} (the latest missed tick, once)")
    print("cron demo: done")


if __name__ == "__main__":
    demo()
