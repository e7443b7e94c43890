"""The dramatiq app: one no-op actor on local Redis (a dedicated db, every key under our namespace).

Worker: `python -m dramatiq bench.peers.dramatiq_app --processes 1`.
"""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from bench.common import REDIS_URL, RUN_ID

NAMESPACE = f"stepwell-bench-{RUN_ID}-dramatiq"

broker = RedisBroker(url=REDIS_URL, namespace=NAMESPACE)
dramatiq.set_broker(broker)


@dramatiq.actor(actor_name="noop")
def noop(i: int) -> None:
    return None
