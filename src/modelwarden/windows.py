"""Time windows: ISO weeks, dates and zone-aware times, parsed one way for the CLI and the HTTP API.

Every window is half-open, ``[since, until)``, in UTC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from modelwarden.errors import InputError


@dataclass
class Window:
    since: datetime
    until: datetime

    def label(self) -> str:
        return f"{self.since:%Y-%m-%d} .. {self.until:%Y-%m-%d}"


def parse_time(value: str, field: str = "time") -> datetime:
    """An ISO-8601 date or date-time; dates and zone-less times are taken as UTC."""
    try:
        if len(value) == 10:
            d = date.fromisoformat(value)
            return datetime(d.year, d.month, d.day, tzinfo=UTC)
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InputError(f"{value!r} is not an ISO-8601 date or time", field=field) from exc
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def iso_week(value: str) -> tuple[datetime, datetime]:
    """``2026-W47`` → (Monday 00:00 UTC, the next Monday 00:00 UTC)."""
    try:
        year_s, week_s = value.upper().split("-W")
        start_d = date.fromisocalendar(int(year_s), int(week_s), 1)
    except ValueError as exc:
        raise InputError(f"{value!r} is not an ISO week like 2026-W47", field="week") from exc
    start = datetime(start_d.year, start_d.month, start_d.day, tzinfo=UTC)
    return start, start + timedelta(weeks=1)


def week_label(start: datetime) -> str:
    y, w, _ = start.isocalendar()
    return f"{y}-W{w:02d}"


def latest_complete_week(last_ts: datetime) -> str:
    """The last ISO week that ended at or before the newest record (or the newest one's week)."""
    day = last_ts.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    this_monday = day - timedelta(days=day.weekday())
    candidate = this_monday - timedelta(weeks=1)
    # If the data reaches the very end of its week, that week is complete.
    if last_ts >= this_monday + timedelta(days=7) - timedelta(hours=1):
        candidate = this_monday
    return week_label(candidate)


WINDOW_HELP = "use 2026-W45 or 2026-11-01..2026-11-08"
_WEEK_RE = re.compile(r"([0-9]{4})-W([0-9]{2})", re.IGNORECASE)
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_TIME_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?")
_ZONE_RE = re.compile(r"Z|[+-][0-9]{2}:[0-9]{2}")


def _window_bound(text: str, upper: bool, value: str, field: str) -> datetime:
    """One end of a window: an ISO week (its Monday, or the next Monday as an upper end), a
    date (00:00 UTC) or an ISO-8601 date-time with a zone."""
    if m := _WEEK_RE.fullmatch(text):
        try:
            monday = date.fromisocalendar(int(m[1]), int(m[2]), 1)
        except ValueError:
            raise InputError(
                f"{value!r}: {text!r} is not an ISO week (weeks run 01 to 52 or 53)", field=field
            ) from None
        start = datetime(monday.year, monday.month, monday.day, tzinfo=UTC)
        return start + timedelta(weeks=1) if upper else start
    if _DATE_RE.fullmatch(text):
        try:
            d = date.fromisoformat(text)
        except ValueError:
            raise InputError(f"{value!r}: {text!r} is not a valid date", field=field) from None
        return datetime(d.year, d.month, d.day, tzinfo=UTC)
    stamp = _TIME_RE.match(text)
    if stamp:
        zone = text[stamp.end() :]
        if not zone:
            raise InputError(
                f"{value!r}: {text!r} has no time zone; add Z or an offset such as +01:00",
                field=field,
            )
        if _ZONE_RE.fullmatch(zone):
            try:
                return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
            except (ValueError, OverflowError):
                raise InputError(
                    f"{value!r}: {text!r} is not a valid date and time", field=field
                ) from None
    raise InputError(f"{value!r} is not a window: {WINDOW_HELP}", field=field)


def parse_window_arg(value: str, field: str) -> Window:
    """A window given on the command line or in a query.

    ``2026-W45`` (one ISO week), or ``FROM..TO`` where each end is an ISO week (``2026-W43..
    2026-W45`` takes the weeks whole), a date (``2026-11-01..2026-11-08``: from 00:00 UTC of the
    first to 00:00 UTC of the second) or an ISO-8601 date-time with a zone
    (``2026-11-01T06:00:00+01:00``). Anything else is an :class:`InputError` naming ``field``.
    """
    text = value.strip()
    if ".." in text:
        a, b = text.split("..", 1)
        if not a or not b or ".." in b:
            raise InputError(f"{value!r} is not a window: {WINDOW_HELP}", field=field)
        lo = _window_bound(a, False, value, field)
        hi = _window_bound(b, True, value, field)
    elif _WEEK_RE.fullmatch(text):
        lo = _window_bound(text, False, value, field)
        hi = _window_bound(text, True, value, field)
    else:
        raise InputError(f"{value!r} is not a window: {WINDOW_HELP}", field=field)
    if hi <= lo:
        raise InputError(f"window {value!r} is empty (its end is not after its start)", field=field)
    return Window(lo, hi)


def default_windows(lo: datetime, hi: datetime) -> tuple[Window, Window]:
    """Baseline and current windows for data spanning ``lo``..``hi``: the latest complete ISO week
    against up to three weeks before it."""
    current = Window(*iso_week(latest_complete_week(hi)))
    baseline = Window(max(lo, current.since - timedelta(weeks=3)), current.since)
    if baseline.until <= baseline.since:
        raise InputError(
            "the store holds less than two weeks; give --baseline and --current", field="baseline"
        )
    return baseline, current
