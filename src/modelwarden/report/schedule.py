"""When the weekly pack is due: pure functions of the schedule, the time zone and the clock.

A schedule is a weekday and a wall-clock time in a time zone, e.g. ``MON 06:00`` in
``Europe/Berlin``. The pack of ISO week *W* (Monday 00:00 UTC to the next Monday, see
:mod:`modelwarden.windows`) is due at the first scheduled moment at or after *W* ends. Wall-clock
times are resolved in the zone on the day itself (:mod:`zoneinfo`), so ``MON 06:00`` in Berlin is
04:00 UTC in summer and 05:00 UTC in winter; a time that does not exist on a spring-forward day
(02:30 in Berlin) is read with the offset before the change, so it falls an hour later on the new
clock (03:30), and one that happens twice on a fall-back day is its first occurrence.

Only the latest week that has fallen due is ever sent: a server that was down for three
Mondays sends the last complete week once when it starts, not three stale packs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from modelwarden.errors import InputError
from modelwarden.windows import iso_week, week_label

DAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
_SCHEDULE_RE = re.compile(r"([A-Za-z]{3})[A-Za-z]*\s+([0-9]{1,2}):([0-9]{2})")


@dataclass(frozen=True)
class Schedule:
    weekday: int  # Monday is 0
    hour: int
    minute: int
    tz: ZoneInfo

    def label(self) -> str:
        return f"{DAYS[self.weekday]} {self.hour:02d}:{self.minute:02d} {self.tz.key}"


def parse_schedule(text: str, timezone: str = "UTC") -> Schedule:
    """``"MON 06:00"`` (any day name's first three letters, 24-hour time) in the IANA zone
    ``timezone``; a clear error naming ``report_schedule`` or ``report_timezone`` otherwise."""
    m = _SCHEDULE_RE.fullmatch(text.strip())
    day = m[1].upper() if m else ""
    if not m or day not in DAYS:
        raise InputError(
            f"{text!r} is not a weekly schedule like 'MON 06:00' (a weekday and a 24-hour time)",
            field="report_schedule",
        )
    hour, minute = int(m[2]), int(m[3])
    if hour > 23 or minute > 59:
        raise InputError(
            f"{text!r}: {hour:02d}:{minute:02d} is not a time of day", field="report_schedule"
        )
    try:
        tz = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InputError(
            f"{timezone!r} is not an IANA time zone like 'Europe/Berlin'", field="report_timezone"
        ) from None
    return Schedule(DAYS.index(day), hour, minute, tz)


def _utc(t: datetime) -> datetime:
    if t.tzinfo is None:
        raise InputError("a time without a zone cannot be scheduled against", field="now")
    return t.astimezone(UTC)


def slot_at_or_after(t: datetime, s: Schedule) -> datetime:
    """The first scheduled moment at or after ``t``, in UTC."""
    t = _utc(t)
    local_day = t.astimezone(s.tz).date()
    for offset in range(-1, 9):
        day = local_day + timedelta(days=offset)
        if day.weekday() != s.weekday:
            continue
        wall = datetime(day.year, day.month, day.day, s.hour, s.minute, tzinfo=s.tz)
        # Through UTC and back: a wall time inside a spring-forward gap comes out at the jump.
        slot = wall.astimezone(UTC)
        if slot >= t:
            return slot
    raise AssertionError("a weekly slot always falls within eight days")  # pragma: no cover


def due_at(week: str, s: Schedule) -> datetime:
    """When the pack of ``week`` is due: the first slot at or after the week ends."""
    _, end = iso_week(week)
    return slot_at_or_after(end, s)


def latest_due_week(now: datetime, s: Schedule) -> str:
    """The newest ISO week whose pack is due at ``now``."""
    now = _utc(now)
    monday = (now - timedelta(days=now.weekday())).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    previous = week_label(monday - timedelta(weeks=1))
    if due_at(previous, s) <= now:
        return previous
    # The week before that ended a week ago, so its slot (within a week of its end) has passed.
    return week_label(monday - timedelta(weeks=2))


@dataclass(frozen=True)
class Due:
    """What the schedule says at ``now``: the week to send now (``week``, or None when nothing is
    owed), and the next week and moment after that."""

    now: datetime
    week: str | None
    week_due_at: datetime | None
    next_week: str
    next_due_at: datetime


def _next_week(week: str) -> str:
    start, _ = iso_week(week)
    return week_label(start + timedelta(weeks=1))


def check(now: datetime, s: Schedule, last_sent: str | None) -> Due:
    """The week owed at ``now`` given the newest week already sent (``last_sent``)."""
    now = _utc(now)
    latest = latest_due_week(now, s)
    owed = last_sent is None or iso_week(latest)[0] > iso_week(last_sent)[0]
    following = _next_week(latest)
    return Due(
        now=now,
        week=latest if owed else None,
        week_due_at=due_at(latest, s) if owed else None,
        next_week=following,
        next_due_at=due_at(following, s),
    )


__all__ = [
    "DAYS",
    "Due",
    "Schedule",
    "check",
    "due_at",
    "latest_due_week",
    "parse_schedule",
    "slot_at_or_after",
]
