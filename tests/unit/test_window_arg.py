"""``--baseline`` and ``--current`` (and the API's ``baseline``/``current``): strict windows."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from modelwarden.errors import EXIT_BAD_INPUT, InputError
from modelwarden.windows import parse_window_arg


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "since", "until"),
    [
        ("2026-W45", _utc(2026, 11, 2), _utc(2026, 11, 9)),
        ("2026-w45", _utc(2026, 11, 2), _utc(2026, 11, 9)),
        ("2020-W53", _utc(2020, 12, 28), _utc(2021, 1, 4)),
        ("2026-W43..2026-W45", _utc(2026, 10, 19), _utc(2026, 11, 9)),
        ("2026-W01..2026-W01", _utc(2025, 12, 29), _utc(2026, 1, 5)),
        ("2026-11-01..2026-11-08", _utc(2026, 11, 1), _utc(2026, 11, 8)),
        ("2026-W45..2026-11-20", _utc(2026, 11, 2), _utc(2026, 11, 20)),
        (
            "2026-11-01T06:00:00+01:00..2026-11-02T00:00Z",
            _utc(2026, 11, 1, 5),
            _utc(2026, 11, 2),
        ),
        (
            "2026-11-01T06:30:15.5-02:30..2026-11-03",
            datetime(2026, 11, 1, 9, 0, 15, 500000, tzinfo=UTC),
            _utc(2026, 11, 3),
        ),
        (" 2026-W45 ", _utc(2026, 11, 2), _utc(2026, 11, 9)),
    ],
)
def test_good_windows(value: str, since: datetime, until: datetime) -> None:
    w = parse_window_arg(value, "baseline")
    assert (w.since, w.until) == (since, until)
    assert w.since.tzinfo == UTC and w.until.tzinfo == UTC


NOT_A_WINDOW = "is not a window: use 2026-W45 or 2026-11-01..2026-11-08"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("yesterday", f"'yesterday' {NOT_A_WINDOW}"),
        # Any value with a W in it used to be taken for a week.
        ("Week 45", f"'Week 45' {NOT_A_WINDOW}"),
        ("W45", f"'W45' {NOT_A_WINDOW}"),
        ("2026W45", f"'2026W45' {NOT_A_WINDOW}"),
        ("2026-W45x", f"'2026-W45x' {NOT_A_WINDOW}"),
        ("2026-W4", f"'2026-W4' {NOT_A_WINDOW}"),
        ("2026-W045", f"'2026-W045' {NOT_A_WINDOW}"),
        ("26-W45", f"'26-W45' {NOT_A_WINDOW}"),
        ("2026-W\uff14\uff15", f"'2026-W\uff14\uff15' {NOT_A_WINDOW}"),  # full-width digits
        ("2026-W45 2026-W46", f"'2026-W45 2026-W46' {NOT_A_WINDOW}"),
        ("2026-11-01", f"'2026-11-01' {NOT_A_WINDOW}"),  # one date is not a window
        ("2026-11-01..", f"'2026-11-01..' {NOT_A_WINDOW}"),
        ("..2026-11-08", f"'..2026-11-08' {NOT_A_WINDOW}"),
        ("2026-W45..2026-W46..2026-W47", f"'2026-W45..2026-W46..2026-W47' {NOT_A_WINDOW}"),
        ("2026-11-01..tomorrow", f"'2026-11-01..tomorrow' {NOT_A_WINDOW}"),
        ("2026/11/01..2026/11/08", f"'2026/11/01..2026/11/08' {NOT_A_WINDOW}"),
        ("1730419200..1731024000", f"'1730419200..1731024000' {NOT_A_WINDOW}"),
        (
            "2026-11-01..2026-11-08T00:00+0100",
            f"'2026-11-01..2026-11-08T00:00+0100' {NOT_A_WINDOW}",
        ),
        ("2026-W54", "'2026-W54': '2026-W54' is not an ISO week (weeks run 01 to 52 or 53)"),
        ("2026-W00", "'2026-W00': '2026-W00' is not an ISO week (weeks run 01 to 52 or 53)"),
        (  # 2025 has 52 ISO weeks, 2026 has 53
            "2025-W53..2026-W53",
            "'2025-W53..2026-W53': '2025-W53' is not an ISO week (weeks run 01 to 52 or 53)",
        ),
        ("2026-02-30..2026-03-02", "'2026-02-30..2026-03-02': '2026-02-30' is not a valid date"),
        (
            "2026-11-01T00:00..2026-11-02T00:00Z",
            "'2026-11-01T00:00..2026-11-02T00:00Z': '2026-11-01T00:00' has no time zone; "
            "add Z or an offset such as +01:00",
        ),
        (
            "2026-11-01T24:30Z..2026-11-02",
            "'2026-11-01T24:30Z..2026-11-02': '2026-11-01T24:30Z' is not a valid date and time",
        ),
        (
            "2026-11-08..2026-11-01",
            "window '2026-11-08..2026-11-01' is empty (its end is not after its start)",
        ),
        (
            "2026-11-01..2026-11-01",
            "window '2026-11-01..2026-11-01' is empty (its end is not after its start)",
        ),
    ],
)
def test_bad_windows_name_the_option(value: str, message: str) -> None:
    for field in ("baseline", "current"):
        with pytest.raises(InputError) as exc:
            parse_window_arg(value, field)
        assert exc.value.field == field
        assert exc.value.message == message
        assert exc.value.exit_code == EXIT_BAD_INPUT
