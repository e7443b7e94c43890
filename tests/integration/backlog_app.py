"""The app of the shutdown-backlog test (`stepwell worker backlog_app:app`): instant async no-ops.

A no-op writes nothing but its outcome, so a fast worker finishes runs far quicker than a
blocked database can save them: what piles up is exactly "completions waiting to be saved".
"""

from __future__ import annotations

from typing import Any

import stepwell

NOOP_EVENT = "backlog.noop"


def build_app(database_url: str | None = None) -> stepwell.App:
    app = stepwell.App("backlog", database_url=database_url)

    @app.function("noop", trigger=stepwell.on_event(NOOP_EVENT), retries=0)
    async def noop(ctx: stepwell.Context[Any]) -> None:
        return None

    return app


app = build_app()
