"""A pgqueuer worker with one async no-op entrypoint: `python -m bench.peers.pgqueuer_worker BATCH_SIZE`.

Connects to $STEPWELL_BENCH_PEER_URL; stops on SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import psycopg
from pgqueuer import Job, PsycopgDriver, Queries, QueueManager


async def main(batch_size: int) -> None:
    conn = await psycopg.AsyncConnection.connect(os.environ["STEPWELL_BENCH_PEER_URL"], autocommit=True)
    manager = QueueManager(Queries(PsycopgDriver(conn)))

    @manager.entrypoint("noop")
    async def noop(job: Job) -> None:
        return None

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, manager.shutdown.set)
    await manager.run(batch_size=batch_size)
    await conn.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
