"""When the weekly pack is due: weekday and time in a zone, across daylight-saving changes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from modelwarden.errors import InputError
from modelwarden.report.schedule import (
    check,
    due_at,
    latest_due_week,
    parse_schedule,
    slot_at_or_after,
)

BERLIN = parse_schedule("MON 06:00", "Europe/Berlin")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, sec: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, sec, tzinfo=UTC)


def test_monday_six_in_berlin_is_four_utc_in_summer_and_five_in_winter() -> None:
    # 2025-W42 ends Monday 20 October (summer time, UTC+2); 2025-W43 holds the October change
    # (Sunday 26th, 03:00 CEST → 02:00 CET) and ends Monday 27th (winter time, UTC+1).
    assert due_at("2025-W42", BERLIN) == utc(2025, 10, 20, 4, 0)
    assert due_at("2025-W43", BERLIN) == utc(2025, 10, 27, 5, 0)
    assert due_at("2025-W43", BERLIN).astimezone(BERLIN.tz).hour == 6


def test_a_fixed_offset_would_send_an_hour_early_after_the_october_change() -> None:
    last = "2025-W42"
    # 04:30 UTC on Monday 27 October is 05:30 in Berlin: not yet six o'clock.
    assert check(utc(2025, 10, 27, 4, 30), BERLIN, last).week is None
    assert check(utc(2025, 10, 27, 4, 59, 59), BERLIN, last).week is None
    at_six = check(utc(2025, 10, 27, 5, 0), BERLIN, last)
    assert (at_six.week, at_six.week_due_at) == ("2025-W43", utc(2025, 10, 27, 5, 0))
    assert (at_six.next_week, at_six.next_due_at) == ("2025-W44", utc(2025, 11, 3, 5, 0))


def test_the_march_change_moves_the_slot_the_other_way() -> None:
    # 2026-W13 ends Monday 30 March 2026, the day after clocks go forward (UTC+2 again).
    assert due_at("2026-W12", BERLIN) == utc(2026, 3, 23, 5, 0)
    assert due_at("2026-W13", BERLIN) == utc(2026, 3, 30, 4, 0)


def test_wall_times_that_do_not_exist_or_happen_twice() -> None:
    # 02:30 on Sunday 29 March 2026 does not exist in Berlin: the slot is after the jump.
    gap = parse_schedule("SUN 02:30", "Europe/Berlin")
    assert slot_at_or_after(utc(2026, 3, 28), gap) == utc(2026, 3, 29, 1, 30)
    # 02:30 on Sunday 25 October 2026 happens twice: the first one (still summer time).
    twice = parse_schedule("SUN 02:30", "Europe/Berlin")
    assert slot_at_or_after(utc(2026, 10, 24), twice) == utc(2026, 10, 25, 0, 30)


def test_the_week_owed_and_the_week_after() -> None:
    # Sunday evening: the week in progress is not due; last week was due last Monday.
    assert latest_due_week(utc(2026, 11, 22, 20, 0), BERLIN) == "2026-W46"
    # Monday 05:00 UTC (06:00 CET): the week that just ended is due.
    assert latest_due_week(utc(2026, 11, 23, 5, 0), BERLIN) == "2026-W47"
    assert latest_due_week(utc(2026, 11, 23, 4, 59), BERLIN) == "2026-W46"
    # Nothing sent yet: the latest due week is owed (made up at start).
    first = check(utc(2026, 11, 25, 12, 0), BERLIN, None)
    assert first.week == "2026-W47" and first.week_due_at == utc(2026, 11, 23, 5, 0)
    # Sent already, or a newer week sent by hand: nothing owed.
    assert check(utc(2026, 11, 25, 12, 0), BERLIN, "2026-W47").week is None
    assert check(utc(2026, 11, 25, 12, 0), BERLIN, "2026-W48").week is None
    # Down for three Mondays: only the latest week is owed, not three stale packs.
    assert check(utc(2026, 12, 14, 9, 0), BERLIN, "2026-W47").week == "2026-W50"


def test_a_schedule_late_in_the_week_in_a_zone_behind_utc() -> None:
    s = parse_schedule("sunday 23:00", "America/Los_Angeles")
    # 2026-W47 ends Monday 23 November 00:00 UTC = Sunday 16:00 in Los Angeles: due that evening.
    assert due_at("2026-W47", s) == utc(2026, 11, 23, 7, 0)
    assert s.label() == "SUN 23:00 America/Los_Angeles"


@pytest.mark.parametrize(
    ("schedule", "zone", "field"),
    [
        ("MONDAY", "UTC", "report_schedule"),
        ("XYZ 06:00", "UTC", "report_schedule"),
        ("MON 25:00", "UTC", "report_schedule"),
        ("MON 06:61", "UTC", "report_schedule"),
        ("MON 06:00", "Mars/Olympus", "report_timezone"),
        ("MON 06:00", "../etc/passwd", "report_timezone"),
    ],
)
def test_bad_schedules_name_the_setting(schedule: str, zone: str, field: str) -> None:
    with pytest.raises(InputError) as err:
        parse_schedule(schedule, zone)
    assert err.value.field == field


def test_a_time_without_a_zone_is_refused() -> None:
    with pytest.raises(InputError):
        check(datetime(2026, 11, 23, 5, 0), BERLIN, None)
