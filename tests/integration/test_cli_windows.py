"""``modelwarden drift`` refuses a window it cannot read, naming the option, with exit 2."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ("--baseline", "Week 45", "--current", "2026-W47"),
            "error (baseline): 'Week 45' is not a window: use 2026-W45 or 2026-11-01..2026-11-08",
        ),
        (
            ("--baseline", "2026-W45", "--current", "2026-11-16T00:00..2026-11-23T00:00Z"),
            "error (current): '2026-11-16T00:00..2026-11-23T00:00Z': '2026-11-16T00:00' has no "
            "time zone; add Z or an offset such as +01:00",
        ),
    ],
)
def test_bad_window_exits_2_naming_the_option(
    tmp_path: Path, run_cli: Any, args: tuple[str, ...], expected: str
) -> None:
    code, out, err = run_cli("drift", *args, data=tmp_path / "warden-data")
    assert code == 2
    assert "Traceback" not in out + err
    assert " ".join(err.split()) == expected
