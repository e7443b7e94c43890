"""The only module that reads wall time.

Everything else asks a `Clock`; tests use `VirtualClock` to sleep a day in a millisecond.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin that never goes backwards; for intervals and timeouts."""
        ...

    @property
    def is_virtual(self) -> bool: ...


class SystemClock:
    """Real time."""

    is_virtual = False

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


class VirtualClock:
    """Time that moves only when told to; safe to share between threads."""

    is_virtual = True

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2030, 1, 1, tzinfo=UTC)
        if self._now.tzinfo is None:
            raise ValueError("VirtualClock needs a timezone-aware start time")
        self._origin = self._now
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        with self._lock:
            return (self._now - self._origin).total_seconds()

    def advance(self, delta: timedelta | None = None, **kwargs: float) -> datetime:
        """Move forward by `delta` or by keyword parts (`minutes=5`)."""
        step = (delta or timedelta()) + timedelta(**kwargs)
        if step < timedelta():
            raise ValueError("a virtual clock only moves forward")
        with self._lock:
            self._now += step
            return self._now

    def set(self, when: datetime) -> None:
        """Jump to `when` (never backwards)."""
        with self._lock:
            if when > self._now:
                self._now = when


def utc(when: datetime) -> datetime:
    """`when` as aware UTC; naive values are refused rather than guessed."""
    if when.tzinfo is None:
        raise ValueError(f"naive datetime {when.isoformat()} has no timezone; pass an aware datetime")
    return when.astimezone(UTC)
