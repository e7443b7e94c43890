"""Reading durations written as numbers, timedeltas or text ('500ms', '10m', '1h30m', '1d')."""

from __future__ import annotations

import math
import re
from datetime import timedelta

from stepwell.errors import InvalidDuration

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")

Duration = float | int | timedelta | str


def parse_duration(value: Duration, *, option: str = "duration", allow_zero: bool = True) -> timedelta:
    """A timedelta from `value`, or InvalidDuration naming `option` and what was wrong."""
    seconds = _seconds(value, option)
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        bound = "positive" if not allow_zero else "zero or positive"
        raise InvalidDuration(f"{option}: {value!r} must be a {bound} finite duration")
    return timedelta(seconds=seconds)


def _seconds(value: Duration, option: str) -> float:
    if isinstance(value, bool):
        raise InvalidDuration(f"{option}: {value!r} is a bool, not a duration")
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        if text and _PART.sub("", text) == "":
            return sum(float(n) * _UNIT_SECONDS[u] for n, u in _PART.findall(text))
        raise InvalidDuration(f"{option}: {value!r} is not a duration; write e.g. '500ms', '30s', '10m', '1h30m', '1d'")
    raise InvalidDuration(f"{option}: expected seconds, a timedelta or text, got {type(value).__name__}")
