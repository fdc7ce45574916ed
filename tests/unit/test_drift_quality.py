"""Quality drift: feedback scores, safety-flag rates and the CUSUM on daily means."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest
from scipy import stats

from modelwarden.drift import CusumDetector, RateDriftDetector, ScoreDriftDetector, get_detector
from modelwarden.errors import InputError

# The seed notebook's feedback distribution: 3, 4 or 5 with probabilities 0.1, 0.2, 0.7.
SEED_SCORES = ([3, 4, 5], [0.1, 0.2, 0.7])
DROPPED_SCORES = ([2, 3, 4, 5], [0.1, 0.2, 0.3, 0.4])


def _scores(n: int, dist, seed: int) -> np.ndarray:
    values, p = dist
    return np.random.default_rng(seed).choice(values, size=n, p=p)


def test_feedback_scores_alert_on_a_drop_and_not_on_the_same_distribution():
    det = ScoreDriftDetector().fit(_scores(500, SEED_SCORES, 1))
    drop = det.test(_scores(300, DROPPED_SCORES, 2))
    same = det.test(_scores(300, SEED_SCORES, 3))
    assert drop.status == "ALERT"
    assert drop.score > drop.threshold > 0.5
    assert drop.details["mean_change"] < -0.5
    assert same.status == "OK"
    assert same.p_value > 0.05


def test_feedback_score_p_value_is_scipys_mann_whitney():
    baseline, current = _scores(200, SEED_SCORES, 4), _scores(100, DROPPED_SCORES, 5)
    result = ScoreDriftDetector().fit(baseline).test(current)
    expected = stats.mannwhitneyu(current, baseline, alternative="less").pvalue
    assert result.p_value == pytest.approx(expected, rel=1e-12)
    json.dumps(result.to_dict(), allow_nan=False)


def test_an_improvement_is_not_a_degradation_alert():
    det = ScoreDriftDetector().fit(_scores(500, DROPPED_SCORES, 6))
    assert det.test(_scores(300, SEED_SCORES, 7)).status == "OK"
    two_sided = ScoreDriftDetector(alternative="two-sided").fit(_scores(500, DROPPED_SCORES, 6))
    assert two_sided.test(_scores(300, SEED_SCORES, 7)).status == "ALERT"


def test_safety_rate_alerts_on_a_rise_with_an_exact_threshold():
    rng = np.random.default_rng(8)
    baseline = (rng.random(1000) < 0.05).astype(int)
    det = RateDriftDetector().fit(baseline)
    risen = det.test((rng.random(400) < 0.12).astype(int))
    same = det.test((rng.random(400) < 0.05).astype(int))
    assert risen.status == "ALERT" and risen.score > risen.threshold
    assert same.status == "OK" and same.score <= same.threshold
    table = [
        [risen.details["count_current"], 400 - risen.details["count_current"]],
        [risen.details["count_baseline"], 1000 - risen.details["count_baseline"]],
    ]
    assert risen.p_value == pytest.approx(
        stats.fisher_exact(table, alternative="greater").pvalue, rel=1e-12
    )


def test_safety_rate_threshold_is_the_exact_boundary_of_fishers_test():
    baseline = np.r_[np.ones(50), np.zeros(950)]
    det = RateDriftDetector().fit(baseline)
    outcomes = []
    for k in range(15, 45):
        r = det.test(np.r_[np.ones(k), np.zeros(400 - k)])
        outcomes.append((r.p_value <= 0.05) == (r.score > r.threshold))
    assert all(outcomes)


def _daily(n: int, seed: int, drop_at: int | None = None, drop: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    series = 4.3 + 0.05 * rng.standard_normal(n)
    if drop_at is not None:
        series[drop_at:] -= drop
    return series


def test_cusum_finds_the_first_alarm_day_of_a_planted_drop():
    det = CusumDetector().fit(_daily(28, 10))
    days = [dt.date(2024, 11, 1) + dt.timedelta(days=i) for i in range(30)]
    result = det.test(_daily(30, 11, drop_at=12, drop=0.1), index=days)
    assert result.status == "ALERT"
    # Four days of a two-sigma drop accumulate past h = 5.
    assert result.details["alarm_index"] == 15
    assert result.details["alarm_label"] == "2024-11-16"
    assert result.details["change_index"] == 12
    assert result.details["alarm_direction"] == "decrease"
    assert result.score > result.threshold == 5.0
    json.dumps(result.to_dict(), allow_nan=False)


def test_cusum_stays_quiet_on_a_stable_series_and_on_a_rise_when_watching_drops():
    det = CusumDetector().fit(_daily(28, 12))
    stable = det.test(_daily(60, 13))
    assert stable.status == "OK"
    assert stable.details["alarm_index"] is None
    rise = det.test(_daily(30, 14, drop_at=10, drop=-0.2))
    assert rise.status == "OK"
    both = get_detector("cusum", direction="both").fit(_daily(28, 12))
    assert both.test(_daily(30, 14, drop_at=10, drop=-0.2)).details["alarm_direction"] == (
        "increase"
    )


def test_cusum_needs_a_week_of_baseline():
    result = CusumDetector().fit(_daily(5, 15)).test(_daily(10, 16))
    assert result.status == "INSUFFICIENT_DATA"


@pytest.mark.parametrize("method", ["feedback_score", "safety_rate", "cusum"])
def test_quality_inputs_are_validated_with_the_field_named(method):
    good = np.r_[np.ones(30), np.zeros(30)] if method == "safety_rate" else np.full(60, 4.0)
    det = get_detector(method).fit(good)
    for bad in ([], [1.0, float("nan")] * 20, np.ones((5, 2))):
        with pytest.raises(InputError) as err:
            det.test(bad)
        assert err.value.field == "current"
    with pytest.raises(InputError) as err:
        get_detector(method).fit([])
    assert err.value.field == "baseline"


def test_out_of_range_values_are_rejected():
    with pytest.raises(InputError) as err:
        ScoreDriftDetector().fit(np.r_[np.full(30, 4.0), 7.0])
    assert err.value.field == "baseline"
    with pytest.raises(InputError) as err:
        RateDriftDetector().fit(np.full(30, 1.0)).test(np.r_[np.zeros(30), 2.0])
    assert err.value.field == "current"
    with pytest.raises(InputError) as err:
        CusumDetector().fit(np.full(10, 4.0)).test(np.full(3, 4.0), index=["a"])
    assert err.value.field == "index"
