"""Alerts over the scopes of one drift run: adjusted for how many scopes were tested."""

from __future__ import annotations

from typing import Any

import pytest

from modelwarden.drift.monitor import adjust_over_scopes


def _row(scope: str, p: float | None, status: str) -> dict[str, Any]:
    return {"scope": scope, "p_value": p, "status": status}


def test_an_alert_that_does_not_survive_the_adjustment_says_so() -> None:
    rows = [
        _row("all plants", 0.30, "OK"),
        _row("Plant_A", 0.03, "ALERT"),  # a quiet week's chance finding
        _row("Plant_B", 0.60, "OK"),
        _row("Plant_C", 0.45, "OK"),
        _row("Plant_D", 0.90, "OK"),
    ]
    adjust_over_scopes(rows, 0.05)
    assert [r["status"] for r in rows] == ["OK"] * 5
    assert rows[1]["p_adjusted"] == pytest.approx(0.15)  # 0.03 * 5 / 1
    assert rows[1]["note"] == (
        "alert alone (p = 0.03), not over 5 scopes (Benjamini-Hochberg p = 0.15)"
    )
    assert all(r["scopes_tested"] == 5 for r in rows)
    assert all("note" not in r for i, r in enumerate(rows) if i != 1)


def test_a_real_drift_keeps_its_alert_and_helps_a_second_one() -> None:
    rows = [
        _row("all plants", 0.020, "ALERT"),
        _row("Plant_A", 0.500, "OK"),
        _row("Plant_C", 0.001, "ALERT"),
        _row("Plant_D", 0.800, "OK"),
    ]
    adjust_over_scopes(rows, 0.05)
    assert [r["status"] for r in rows] == ["ALERT", "OK", "ALERT", "OK"]
    # Step-up: 0.001 * 4 / 1 and 0.020 * 4 / 2; Holm would need 0.020 * 3 = 0.06 > alpha.
    assert rows[2]["p_adjusted"] == pytest.approx(0.004)
    assert rows[0]["p_adjusted"] == pytest.approx(0.04)


def test_rows_without_a_p_value_are_left_alone_and_not_counted() -> None:
    rows = [
        _row("all plants", 0.01, "ALERT"),
        _row("Plant_A", None, "INSUFFICIENT_DATA"),
        _row("Plant_B", 0.04, "ALERT"),
    ]
    adjust_over_scopes(rows, 0.05)
    assert rows[1] == _row("Plant_A", None, "INSUFFICIENT_DATA")
    assert rows[0]["scopes_tested"] == rows[2]["scopes_tested"] == 2
    assert [r["status"] for r in rows] == ["ALERT", "INSUFFICIENT_DATA", "ALERT"]
    adjust_over_scopes([], 0.05)  # nothing tested: nothing to do
