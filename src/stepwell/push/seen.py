"""The message ids a push endpoint has accepted lately, so that a replayed request runs nothing.

A signed request is valid for the signature's tolerance (5 minutes either way), so a request captured
on the way (or logged by a proxy) could be sent again and run the function's code again. The
dispatcher gives every request a fresh `webhook-id` (a connection retry resends only what was never
delivered), so an id seen twice is a replay: the endpoint answers it 409 `duplicate`.

An id is kept for twice the tolerance (a signature stamped up to one tolerance ahead of this clock
stays valid until one tolerance after it), at most `capacity` ids (100,000 by default: about 20 MiB
with the dispatcher's ids). Past the capacity the oldest id is forgotten early and a warning is
logged: that takes more than `capacity` signed requests within twice the tolerance (about 160 a
second per process). The memory is per process: web processes behind a balancer each keep their
own, so a replay sent to another process runs there. What it produces is never stored: the
endpoint has no database, its answer goes back to whoever replayed the request, and the dispatcher
stores only the answer signed with its own request's id, under its lease (token-fenced writes).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from datetime import datetime, timedelta

log = logging.getLogger("stepwell.push")
CAPACITY = 100_000


class SeenIds:
    """A bounded, thread-safe set of ids with their arrival time; time comes from the caller's clock."""

    def __init__(self, keep: timedelta, capacity: int = CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.keep, self.capacity = keep, capacity
        self._seen: OrderedDict[str, datetime] = OrderedDict()  # arrival order
        self._lock = threading.Lock()

    def first_time(self, message_id: str, now: datetime) -> bool:
        """Remember `message_id`; False when it was already remembered (a replay)."""
        with self._lock:
            self._forget_before(now - self.keep)
            if message_id in self._seen:
                return False
            if len(self._seen) >= self.capacity:
                self._seen.popitem(last=False)
                log.warning(
                    "push endpoint: more than %d request ids within %s; forgetting the oldest early",
                    self.capacity, self.keep,
                )  # fmt: skip
            self._seen[message_id] = now
            return True

    def __len__(self) -> int:
        with self._lock:
            return len(self._seen)

    def _forget_before(self, horizon: datetime) -> None:
        while self._seen:
            oldest = next(iter(self._seen.values()))
            if oldest >= horizon:
                return
            self._seen.popitem(last=False)
