"""The procrastinate app: one async no-op task, on $STEPWELL_BENCH_PEER_URL.

Worker: `python -m procrastinate --app=bench.peers.procrastinate_app.app worker`.
"""

from __future__ import annotations

import os

import procrastinate

app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(conninfo=os.environ.get("STEPWELL_BENCH_PEER_URL", "")),
)


@app.task(name="noop")
async def noop(i: int) -> None:
    return None
