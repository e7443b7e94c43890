"""When a failed attempt is tried again: exponential backoff with jitter, capped."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta

from stepwell.errors import ConfigurationError, StepwellError
from stepwell.model.durations import parse_duration


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before attempt n+1 is `base * factor**(n-1)`, capped at `cap`, then ±`jitter`."""

    base: timedelta = timedelta(seconds=1)
    factor: float = 2.0
    cap: timedelta = timedelta(minutes=10)
    jitter: float = 0.2

    def __post_init__(self) -> None:
        for name in ("base", "cap"):
            given = getattr(self, name)
            if not isinstance(given, timedelta):
                raise ConfigurationError(
                    f"backoff: {name} must be a timedelta (timedelta(seconds=0.1), say), not {type(given).__name__} "
                    f"{given!r}"
                )
        for name in ("factor", "jitter"):
            given = getattr(self, name)
            if isinstance(given, bool) or not isinstance(given, int | float):
                raise ConfigurationError(f"backoff: {name} must be a number, not {type(given).__name__} {given!r}")
        if self.base <= timedelta() or self.cap < self.base:
            raise ConfigurationError("backoff: base must be > 0 and cap >= base")
        if self.factor < 1:
            raise ConfigurationError(f"backoff: factor {self.factor} must be >= 1")
        if not 0 <= self.jitter < 1:
            raise ConfigurationError(f"backoff: jitter {self.jitter} must be in [0, 1)")

    def delay(self, failed_attempt: int, rand: random.Random | None = None) -> timedelta:
        """The wait after attempt number `failed_attempt` (1-based) failed."""
        exponent = max(failed_attempt - 1, 0)
        raw = min(self.base.total_seconds() * self.factor ** min(exponent, 64), self.cap.total_seconds())
        spread = (rand or random).uniform(-self.jitter, self.jitter)
        return timedelta(seconds=raw * (1 + spread))


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    retries: int = 3
    backoff: Backoff = Backoff()

    def __post_init__(self) -> None:
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise ConfigurationError(f"retries: {self.retries!r} must be an int >= 0")

    @property
    def max_attempts(self) -> int:
        return self.retries + 1

    def has_attempts_left(self, attempt: int) -> bool:
        return attempt < self.max_attempts


class RetryAfterError(StepwellError):
    """Raise to retry the run no sooner than `delay` (seconds, timedelta or text like '30s')."""

    def __init__(self, delay: float | timedelta | str, message: str | None = None) -> None:
        self.delay = parse_duration(delay, option="RetryAfterError.delay")
        super().__init__(message or f"retry requested after {self.delay.total_seconds():g}s")
