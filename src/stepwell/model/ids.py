"""Identifiers: time-ordered, random, URL-safe (the ULID layout, 48-bit ms time + 80 random bits, in hex)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from datetime import datetime

# Ids are plain `str` at every seam (the NewTypes RunId and EventId were declared and never used;
# removed rather than half-applied).


def new_id(now: datetime) -> str:
    """A 32-character id that sorts by creation time: 48 bits of milliseconds, then 80 random bits, in hex."""
    return f"{int(now.timestamp() * 1000):012x}{os.urandom(10).hex()}"


ID_CHUNK = 256  # the most ids drawn per os.urandom call by new_ids


def new_ids(now: datetime) -> Iterator[str]:
    """As many `new_id(now)` as the caller takes, for a whole batch: the time prefix is formatted once and
    the random parts come from one os.urandom call per chunk (a call per id cost as much as the rest of the
    id). Chunks start small (a single send takes two ids) and double up to ID_CHUNK. Same layout,
    uniqueness and order as new_id: each id has its own 80 random bits."""
    prefix = f"{int(now.timestamp() * 1000):012x}"
    size = 4
    while True:
        random = os.urandom(10 * size).hex()
        for start in range(0, 20 * size, 20):
            yield prefix + random[start : start + 20]
        size = min(2 * size, ID_CHUNK)


def child_run_id(parent_id: str, step_id: str, index: int | None = None) -> str:
    """Deterministic, so that a parent replaying after a crash creates each child exactly once."""
    digest = hashlib.sha256(step_id.encode()).hexdigest()[:10]
    return f"{parent_id}.{digest}" if index is None else f"{parent_id}.{digest}.{index}"


def sent_event_id(run_id: str, step_id: str) -> str:
    """The id of an event sent by a step: the same on every replay, so the send happens once."""
    return f"{run_id}.{hashlib.sha256(step_id.encode()).hexdigest()[:16]}"


def new_token() -> str:
    """A lease fencing token: 128 random bits."""
    return os.urandom(16).hex()
