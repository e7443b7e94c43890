"""Cron schedules: the UTC instants that a cron expression names in a time zone, DST included.

Local times are turned into UTC instants with zoneinfo, by the rule that cron(8) follows:

* A **fixed-time** schedule (neither the minute nor the hour field starts with `*`, e.g.
  `30 2 * * *`, `0 9,17 * * 1-5`, `@daily`) fires once per local slot. A local time that occurs
  twice (autumn, clocks go back) fires at its first occurrence; a local time that does not exist
  (spring, clocks go forward) fires shifted forward by the gap (02:30 in a 02:00 -> 03:00 gap
  fires at 03:30 summer time), the reading Python and PostgreSQL give a nonexistent local time.
* An **interval** schedule (the minute or the hour field starts with `*`, e.g. `*/5 * * * *`,
  `0 * * * *`, `@hourly`) follows elapsed time: it fires at every instant whose local time
  matches, so a repeated local hour fires twice (they are an hour apart) and a skipped local
  hour fires nothing (no time passed there).

Either way a schedule names a set of instants: two slots that land on the same instant fire once.
"""

from __future__ import annotations

import difflib
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from croniter import CroniterBadDateError, croniter

from stepwell.errors import ConfigurationError

CRON_EVENT = "stepwell/cron"

_FIELDS = ("minute", "hour", "day of month", "month", "day of week")
_ACCEPTED = (
    "0-59",
    "0-23",
    "1-31 or L (the last day)",
    "1-12 or jan-dec",
    "0-7 or sun-sat (0 and 7 are Sunday; 5#2 is the second Friday, 5L the last)",
)
_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_RANDOM = re.compile(r"(?<![a-z])[hr](?![a-z])")  # Jenkins-style H and croniter's R: not the same on every host
# Search windows for the next (or latest) tick, after a first one of twice the schedule's usual spacing.
_WINDOWS = tuple(timedelta(days=days) for days in (1, 32, 367, 366 * 30))
# Instants of a gap's slots lie after the gap: look back past the longest gap there ever was (a skipped day).
_LOOKBACK = timedelta(days=2)
_MINUTE = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class Cron:
    """Start a run at every tick of a five-field cron expression, read in time zone `tz` (default UTC)."""

    expression: str
    tz: str = "UTC"
    _fields: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)
    _windows: tuple[timedelta, ...] = field(init=False, repr=False, compare=False)
    _iterators: threading.local = field(init=False, repr=False, compare=False)  # one parsed croniter per thread

    def __post_init__(self) -> None:
        fields = _parse(self.expression)
        zone = _zone(self.expression, self.tz)
        object.__setattr__(self, "_fields", fields)
        object.__setattr__(self, "_zone", zone)
        object.__setattr__(self, "_iterators", threading.local())
        try:
            it = croniter(" ".join(fields), datetime(2000, 1, 1))
            first_wall = it.get_next(datetime)
            spacing = it.get_next(datetime) - first_wall
        except CroniterBadDateError:
            raise ConfigurationError(
                f"cron {self.expression!r} never matches a date (a day that no month has, such as 30 2 = February 30)"
            ) from None
        first = 2 * spacing
        object.__setattr__(self, "_windows", (first, *(span for span in _WINDOWS if span > first)))

    def __reduce__(self) -> tuple[type[Cron], tuple[str, str]]:
        return (Cron, (self.expression, self.tz))  # pickle and copy rebuild the parsed parts

    @property
    def schedule(self) -> str:
        """The schedule's identity, e.g. '0 3 * * * Europe/Paris'; a changed schedule starts afresh."""
        return f"{' '.join(self._fields)} {self.tz}"

    @property
    def is_interval(self) -> bool:
        """True when the minute or hour field starts with `*`: the schedule follows elapsed time across DST."""
        return self._fields[0].startswith("*") or self._fields[1].startswith("*")

    def ticks_between(self, start: datetime, end: datetime) -> list[datetime]:
        """The ticks t with start < t <= end, as aware UTC datetimes, ascending."""
        start, end = _aware(start), _aware(end)
        if end <= start:
            return []
        low, high = _offset_range(self._zone, start - _LOOKBACK, end)
        last_wall = _naive(end + high)
        found: set[datetime] = set()
        for wall in self._walls_from(_naive(start + low) - _MINUTE):
            if wall > last_wall:
                break
            found.update(t for t in self._instants(wall) if start < t <= end)
        return sorted(found)

    def next_after(self, when: datetime) -> datetime | None:
        """The first tick strictly after `when` (None only if there is none within 30 years)."""
        when = _aware(when)
        for span in self._windows:
            ticks = self.ticks_between(when, when + span)
            if ticks:
                return ticks[0]
        return None

    def latest_at(self, when: datetime) -> datetime | None:
        """The last tick at or before `when` (None only if there is none within 30 years)."""
        when = _aware(when)
        for span in self._windows:
            ticks = self.ticks_between(when - span, when)
            if ticks:
                return ticks[-1]
        return None

    def _walls_from(self, start: datetime) -> Iterator[datetime]:
        """Matching local wall times (naive) strictly after `start`, ascending."""
        it = getattr(self._iterators, "it", None)
        if it is None:
            it = self._iterators.it = croniter(" ".join(self._fields), start)
        it.set_current(start.replace(second=0, microsecond=0), force=True)
        while True:
            try:
                yield it.get_next(datetime)
            except CroniterBadDateError:
                return

    def _instants(self, wall: datetime) -> tuple[datetime, ...]:
        """The UTC instants at which a local slot fires (see the module docstring)."""
        # fold=0: a repeated time's first occurrence; a nonexistent time read with the offset before the gap.
        first = wall.replace(tzinfo=self._zone).astimezone(UTC)
        if not self.is_interval:
            return (first,)
        second = wall.replace(tzinfo=self._zone, fold=1).astimezone(UTC)
        return tuple(t for t in {first, second} if _naive(t.astimezone(self._zone)) == wall)


def cron(expression: str, tz: str = "UTC") -> Cron:
    """A cron trigger: `stepwell.cron("0 3 * * *", tz="Europe/Paris")`. See docs/guides/cron.md."""
    return Cron(expression, tz)


def cron_event_id(function: str, tick_at: datetime) -> str:
    """The id of a tick's event: the same for every scheduler, so that a tick is stored once."""
    return f"cron:{function}@{iso_utc(tick_at)}"


def iso_utc(when: datetime) -> str:
    return _aware(when).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(expression: object) -> tuple[str, ...]:
    if not isinstance(expression, str):
        raise ConfigurationError(f"cron: the expression must be a str such as '0 3 * * *', got {expression!r}")
    text = expression.strip()
    if text.startswith("@"):
        if text.lower() not in _ALIASES:
            raise ConfigurationError(f"cron {expression!r}: unknown alias; use one of {', '.join(_ALIASES)}")
        text = _ALIASES[text.lower()]
    fields = tuple(text.split())
    if len(fields) != 5:
        raise ConfigurationError(
            f"cron {expression!r} has {len(fields)} field(s); use 5: minute hour day-of-month month day-of-week, "
            "e.g. '0 3 * * *' (seconds and years are not supported)"
        )
    for position, (value, name) in enumerate(zip(fields, _FIELDS, strict=True)):
        if _RANDOM.search(value.lower()):
            raise ConfigurationError(
                f"cron {expression!r}: field {position + 1} ({name}) {value!r} is random or hashed (H, R); "
                "every scheduler must compute the same ticks, so write the value itself"
            )
        probe = ["*"] * 5
        probe[position] = value
        if not croniter.is_valid(" ".join(probe)):
            raise ConfigurationError(
                f"cron {expression!r}: field {position + 1} ({name}) {value!r} is not valid; "
                f"use {_ACCEPTED[position]}, with lists (1,15), ranges (1-5) and steps (*/10)"
            )
    if not croniter.is_valid(" ".join(fields)):
        raise ConfigurationError(f"cron {expression!r} is not a valid cron expression")
    return fields


def _zone(expression: str, tz: object) -> ZoneInfo:
    if isinstance(tz, str) and tz:
        try:
            return ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
    close = difflib.get_close_matches(str(tz), sorted(available_timezones()), n=3) if isinstance(tz, str) else []
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    raise ConfigurationError(
        f"cron {expression!r}: unknown time zone tz={tz!r}{hint}; use an IANA name such as 'Europe/Paris' or 'UTC'"
    )


def _aware(when: datetime) -> datetime:
    if when.tzinfo is None:
        raise ValueError(f"naive datetime {when.isoformat()} has no timezone; pass an aware datetime")
    return when.astimezone(UTC)


def _naive(when: datetime) -> datetime:
    return when.replace(tzinfo=None, fold=0)


def _offset_range(zone: ZoneInfo, start: datetime, end: datetime) -> tuple[timedelta, timedelta]:
    """The smallest and largest UTC offset of `zone` between two instants (sampled: offsets last months)."""
    step = timedelta(hours=6) if end - start <= timedelta(days=40) else timedelta(days=1)
    offsets = set()
    moment = start
    while moment < end:
        offsets.add(moment.astimezone(zone).utcoffset())
        moment += step
    offsets.add(end.astimezone(zone).utcoffset())
    known = [offset for offset in offsets if offset is not None]
    return min(known), max(known)
