"""Lease renewal on its own thread, so that user code hogging the event loop cannot starve it.

A renewal that fails (the database is away) renews nothing: the worker's local deadlines
(`runtime/deadlines.py`) then run out, and the attempts stop at their next step instead of
running user code under a lease that another worker may already hold.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta

from stepwell.errors import StepwellError
from stepwell.runtime.deadlines import LeaseDeadlines
from stepwell.store.base import Lease, Store

log = logging.getLogger("stepwell.heartbeat")


class Heartbeat:
    """Every `lease / 3`, extend every lease the worker still holds; report the ones that were lost."""

    def __init__(
        self,
        store: Store,
        lease: timedelta,
        held: Callable[[], list[Lease]],
        on_lost: Callable[[list[str]], None],
        deadlines: LeaseDeadlines | None = None,
    ) -> None:
        self.store, self.lease, self.held, self.on_lost = store, lease, held, on_lost
        self.deadlines = deadlines
        self.interval = lease.total_seconds() / 3
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="stepwell-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def beat(self) -> None:
        leases = self.held()
        if not leases:
            return
        since = self.deadlines.now() if self.deadlines is not None else 0.0
        renewed = {lease.run_id for lease in self.store.extend_leases(leases, lease=self.lease)}
        if self.deadlines is not None:
            self.deadlines.renewed(renewed, since)
        lost = [lease.run_id for lease in leases if lease.run_id not in renewed]
        if lost:
            self.on_lost(lost)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except StepwellError as err:  # the database is away: try again next beat
                log.warning("heartbeat failed: %s", err)
