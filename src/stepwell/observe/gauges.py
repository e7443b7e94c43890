"""Queue depth and the age of the oldest ready run, per function, sampled by one process.

A scrape never touches the database: a sampler thread refreshes the gauges every `interval`
seconds (15 by default) with one bounded query, `Store.queue_gauges`, which reads at most
`scan_limit` entries of the ready index (runs_ready) in claim order. Its cost is therefore
O(min(ready runs, scan_limit)) whatever the size of the runs table, 10 million rows included.

Beyond `scan_limit` ready runs the depth is a floor (`stepwell_queue_scan_capped` is 1): alert on
the trend instead, `rate(stepwell_runs_created_total[5m]) - rate(stepwell_runs_started_total[5m])`
(docs/reference/metrics.md). Run the sampler in one process per database (the worker started
with `--metrics-port`, or the API server), not in every worker.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from stepwell.clock import SystemClock
from stepwell.errors import StepwellError
from stepwell.observe import metrics as metrics_module
from stepwell.store.base import Store

log = logging.getLogger("stepwell.observe")
_CLOCK = SystemClock()  # when the sample was taken, by this process's wall clock


def sample(store: Store, functions: Sequence[str] = (), *, scan_limit: int = 10_000) -> None:
    """One refresh of the queue gauges (functions listed read 0 when nothing of theirs is ready)."""
    now = store.now()
    queues = store.queue_gauges(now=now, scan_limit=scan_limit)
    metrics_module.current().set_queue(functions, queues, now.timestamp(), _CLOCK.now().timestamp())


class QueueSampler:
    """A daemon thread that calls `sample` every `interval` seconds until stopped.

    `store` is asked for on every pass, so a database that is not there yet is simply sampled later."""

    def __init__(
        self,
        store: Callable[[], Store],
        functions: Callable[[], Sequence[str]] = lambda: (),
        *,
        interval: float = 15.0,
        scan_limit: int = 10_000,
    ) -> None:
        self.store, self.functions, self.interval, self.scan_limit = store, functions, interval, scan_limit
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="stepwell-queue-gauges", daemon=True)

    def start(self) -> QueueSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                sample(self.store(), self.functions(), scan_limit=self.scan_limit)
            except StepwellError as err:
                log.warning("queue gauges not sampled: %s", err)
            self._stop.wait(self.interval)
