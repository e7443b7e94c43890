"""Cron schedule math: UTC instants of local slots, across both Europe/Paris DST transitions of 2026.

Paris: on 2026-03-29 clocks go from 02:00 CET (+01) to 03:00 CEST (+02), at 01:00 UTC;
on 2026-10-25 they go back from 03:00 CEST to 02:00 CET, also at 01:00 UTC.
"""

from __future__ import annotations

import copy
import pickle
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

import stepwell
from stepwell.errors import ConfigurationError
from stepwell.model.schedule import Cron

PARIS = ZoneInfo("Europe/Paris")


def utc(month: int, day: int, hour: int, minute: int = 0, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def local_day(day: date, zone: ZoneInfo = PARIS) -> tuple[datetime, datetime]:
    """The UTC bounds (start exclusive) of a local calendar day, shifted so that its midnight is included."""
    start = datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=zone).astimezone(UTC)
    return start - timedelta(microseconds=1), end - timedelta(microseconds=1)


def ticks_on(cron: Cron, day: date) -> list[datetime]:
    return cron.ticks_between(*local_day(day, ZoneInfo(cron.tz)))


# Daily, fixed time: one run per local day, DST or not.


def test_a_daily_slot_inside_the_spring_gap_fires_once_shifted_forward_by_the_gap() -> None:
    daily = stepwell.cron("30 2 * * *", tz="Europe/Paris")
    assert daily.ticks_between(utc(3, 27, 0), utc(3, 31, 0)) == [
        utc(3, 27, 1, 30),  # 02:30 CET
        utc(3, 28, 1, 30),  # 02:30 CET
        utc(3, 29, 1, 30),  # 02:30 does not exist: 03:30 CEST
        utc(3, 30, 0, 30),  # 02:30 CEST
    ]


def test_a_daily_slot_inside_the_autumn_overlap_fires_once_at_its_first_occurrence() -> None:
    daily = stepwell.cron("30 2 * * *", tz="Europe/Paris")
    assert daily.ticks_between(utc(10, 23, 0), utc(10, 27, 0)) == [
        utc(10, 23, 0, 30),  # 02:30 CEST
        utc(10, 24, 0, 30),
        utc(10, 25, 0, 30),  # 02:30 happens twice: the first, summer time (not 01:30 UTC as well)
        utc(10, 26, 1, 30),  # 02:30 CET
    ]


@pytest.mark.parametrize(
    ("expression", "spring", "autumn"),
    [
        ("0 3 * * *", utc(3, 29, 1), utc(10, 25, 2)),  # 03:00 exists once on both days
        ("0 2 * * *", utc(3, 29, 1), utc(10, 25, 0)),  # the gap's 02:00 -> 03:00 CEST; the overlap's first 02:00
        ("0 0 * * *", utc(3, 28, 23), utc(10, 24, 22)),
        ("@daily", utc(3, 28, 23), utc(10, 24, 22)),
    ],
)
def test_a_daily_schedule_fires_exactly_once_on_each_dst_day(
    expression: str, spring: datetime, autumn: datetime
) -> None:
    daily = Cron(expression, "Europe/Paris")
    assert ticks_on(daily, date(2026, 3, 29)) == [spring]
    assert ticks_on(daily, date(2026, 10, 25)) == [autumn]


def test_a_daily_schedule_fires_once_on_every_local_day_of_a_year_in_several_zones() -> None:
    for tz in ("Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "UTC"):
        daily = Cron("30 2 * * *", tz)
        zone = ZoneInfo(tz)
        ticks = daily.ticks_between(utc(1, 1, 0), utc(1, 1, 0, year=2027))
        days = Counter(t.astimezone(zone).date() for t in ticks)
        assert len(ticks) in (364, 365, 366), tz
        assert set(days.values()) == {1}, f"{tz}: {[d for d, n in days.items() if n != 1]}"


# Hourly (an interval): follows elapsed time.


def test_an_hourly_schedule_keeps_hourly_spacing_across_the_spring_gap() -> None:
    hourly = stepwell.cron("0 * * * *", tz="Europe/Paris")
    ticks = ticks_on(hourly, date(2026, 3, 29))
    assert len(ticks) == 23  # the local day is 23 hours long; 02:00 does not exist
    assert all(b - a == timedelta(hours=1) for a, b in pairwise(ticks))
    assert [t.astimezone(PARIS).hour for t in ticks[:4]] == [0, 1, 3, 4]


def test_an_hourly_schedule_fires_both_02_00s_of_the_autumn_overlap() -> None:
    hourly = stepwell.cron("0 * * * *", tz="Europe/Paris")
    ticks = ticks_on(hourly, date(2026, 10, 25))
    assert len(ticks) == 25  # the local day is 25 hours long
    assert len(set(ticks)) == 25
    assert all(b - a == timedelta(hours=1) for a, b in pairwise(ticks))
    assert hourly.ticks_between(utc(10, 24, 23, 30), utc(10, 25, 2, 30)) == [
        utc(10, 25, 0),  # 02:00 CEST
        utc(10, 25, 1),  # 02:00 CET
        utc(10, 25, 2),  # 03:00 CET
    ]


def test_a_sub_hourly_interval_keeps_its_spacing_across_both_transitions() -> None:
    every_quarter = Cron("*/15 * * * *", "Europe/Paris")
    for start in (utc(3, 28, 22), utc(10, 24, 22)):
        ticks = every_quarter.ticks_between(start, start + timedelta(hours=6))
        assert len(ticks) == 24
        assert all(b - a == timedelta(minutes=15) for a, b in pairwise(ticks))


def test_an_interval_limited_to_the_changing_hour_follows_the_wall_clock() -> None:
    during_two = Cron("*/30 2 * * *", "Europe/Paris")
    assert ticks_on(during_two, date(2026, 3, 29)) == []  # no 02:xx that day
    assert ticks_on(during_two, date(2026, 10, 25)) == [
        utc(10, 25, 0),
        utc(10, 25, 0, 30),
        utc(10, 25, 1),
        utc(10, 25, 1, 30),
    ]


def test_fixed_hours_that_meet_in_the_gap_fire_once_for_that_instant() -> None:
    night = Cron("0 1,2,3 * * *", "Europe/Paris")
    # 02:00 moves to 03:00 CEST, which is the 03:00 slot: one instant, one run
    assert ticks_on(night, date(2026, 3, 29)) == [utc(3, 29, 0), utc(3, 29, 1)]
    assert ticks_on(night, date(2026, 10, 25)) == [utc(10, 24, 23), utc(10, 25, 0), utc(10, 25, 2)]


# next_after / latest_at agree with the enumeration.


@pytest.mark.parametrize("expression", ["30 2 * * *", "0 * * * *", "*/20 * * * *", "0 1,2,3 * * *", "15 2 * * 0"])
def test_next_after_and_latest_at_walk_the_same_ticks_as_the_enumeration(expression: str) -> None:
    schedule = Cron(expression, "Europe/Paris")
    for start, end in ((utc(3, 27, 0), utc(3, 31, 0)), (utc(10, 23, 0), utc(10, 27, 0))):
        expected = schedule.ticks_between(start, end)
        walked: list[datetime] = []
        moment = schedule.next_after(start)
        while moment is not None and moment <= end:
            walked.append(moment)
            moment = schedule.next_after(moment)
        assert walked == expected
        for tick in expected:
            assert schedule.latest_at(tick) == tick
            assert schedule.latest_at(tick + timedelta(seconds=59)) == tick
            assert schedule.next_after(tick - timedelta(seconds=1)) == tick


def test_sparse_schedules_are_found_years_away() -> None:
    leap = Cron("0 12 29 2 *")
    assert leap.next_after(utc(3, 1, 0)) == utc(2, 29, 12, year=2028)
    assert leap.latest_at(utc(3, 1, 0)) == utc(2, 29, 12, year=2024)


def test_a_schedule_is_identified_by_its_fields_and_zone() -> None:
    assert Cron("@daily", "Europe/Paris").schedule == "0 0 * * * Europe/Paris"
    assert Cron("  0   3 * * *").schedule == "0 3 * * * UTC"
    assert Cron("0 3 * * *", "Europe/Paris") == stepwell.cron("0 3 * * *", tz="Europe/Paris")
    assert Cron("0 * * * *").is_interval and Cron("*/5 3 * * *").is_interval
    assert not Cron("30 2 * * *").is_interval and not Cron("@weekly").is_interval


# Bad schedules are refused with a message naming what is wrong.


@pytest.mark.parametrize(
    ("expression", "tz", "message"),
    [
        ("0 25 * * *", "UTC", "field 2 (hour) '25' is not valid; use 0-23"),
        ("61 * * * *", "UTC", "field 1 (minute) '61' is not valid; use 0-59"),
        ("0 0 32 * *", "UTC", "field 3 (day of month) '32'"),
        ("0 0 * 13 *", "UTC", "field 4 (month) '13'"),
        ("0 0 * * funday", "UTC", "field 5 (day of week) 'funday'"),
        ("*/0 * * * *", "UTC", "field 1 (minute) '*/0'"),
        ("0 3 * *", "UTC", "has 4 field(s); use 5"),
        ("0 0 3 * * * *", "UTC", "has 7 field(s)"),
        ("", "UTC", "has 0 field(s)"),
        ("@fortnightly", "UTC", "unknown alias"),
        ("H 3 * * *", "UTC", "random or hashed"),
        ("R 3 * * *", "UTC", "random or hashed"),
        ("0 0 30 2 *", "UTC", "never matches a date"),
        ("0 3 * * *", "Europe/Pariss", "unknown time zone tz='Europe/Pariss' (did you mean 'Europe/Paris'"),
        ("0 3 * * *", "Mars/Olympus", "unknown time zone tz='Mars/Olympus'"),
        ("0 3 * * *", "", "unknown time zone"),
        ("0 3 * * *", "../etc/passwd", "unknown time zone"),
    ],
)
def test_an_invalid_schedule_is_refused_with_a_clear_message(expression: str, tz: str, message: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        stepwell.cron(expression, tz=tz)
    assert message in str(raised.value)
    assert repr(expression) in str(raised.value)


def test_a_schedule_survives_pickling_and_copying() -> None:
    original = Cron("30 2 * * *", "Europe/Paris")
    for clone in (pickle.loads(pickle.dumps(original)), copy.deepcopy(original)):
        assert clone == original
        assert clone.next_after(utc(3, 28, 12)) == utc(3, 29, 1, 30)


def test_names_of_months_and_days_are_not_mistaken_for_random_fields() -> None:
    assert Cron("0 9 * mar-apr thu,fri").next_after(utc(1, 1, 0)) == utc(3, 5, 9)
