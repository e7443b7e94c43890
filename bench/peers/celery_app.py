"""The celery app: one no-op task on local Redis (a dedicated db, every key under our prefix).

Worker: `python -m celery -A bench.peers.celery_app worker -Q stepwell-bench`.
"""

from __future__ import annotations

from celery import Celery

from bench.common import REDIS_URL, RUN_ID

PREFIX = f"stepwell-bench-{RUN_ID}-celery:"
QUEUE = "stepwell-bench"

app = Celery("stepwell_bench", broker=REDIS_URL)
app.conf.update(
    broker_transport_options={"global_keyprefix": PREFIX},
    task_default_queue=QUEUE,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


@app.task(name="noop")
def noop(i: int) -> None:
    return None
