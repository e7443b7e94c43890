"""Times in the SQLite store: INTEGER microseconds since the Unix epoch, UTC.

Integers keep arithmetic and comparisons exact; floats drifted by a microsecond on the way
through `datetime` and made a wake-up time compare earlier than itself.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
FOREVER = 253402300799_000000  # 9999-12-31: "until woken"


def micros(span: timedelta) -> int:
    return span // _MICROSECOND


def stamp(when: datetime | None) -> int | None:
    return None if when is None else micros(when - EPOCH)


def moment(value: float) -> datetime:
    return EPOCH + timedelta(microseconds=int(value))


def moment_or_none(value: float | None) -> datetime | None:
    return None if value is None else moment(value)
