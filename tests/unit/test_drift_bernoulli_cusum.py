"""The Bernoulli CUSUM on safety flags: calibrated on rare flags, quick on a real rise."""

from __future__ import annotations

import json

import numpy as np
import pytest

from modelwarden.drift import get_detector
from modelwarden.drift.quality import BernoulliCusumDetector, CusumDetector
from modelwarden.errors import InputError


def _flags(n: int, rate: float, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random(n) < rate).astype(int)


def _daily_rates(flags: np.ndarray, per_day: int) -> np.ndarray:
    return flags[: flags.size // per_day * per_day].reshape(-1, per_day).mean(axis=1)


def test_false_alarms_on_rare_flags_match_alpha_where_a_daily_cusum_does_not() -> None:
    # A plant with 25 requests a day and one flag in 250 answers: two weeks of baseline, one week
    # watched, 300 seeded repetitions with nothing changed.
    trials, per_day, rate = 300, 25, 0.004
    bernoulli = daily = 0
    for seed in range(trials):
        base, cur = _flags(14 * per_day, rate, seed), _flags(7 * per_day, rate, 10_000 + seed)
        res = BernoulliCusumDetector(n_simulations=500).fit(base).test(cur)
        bernoulli += res.status == "ALERT"
        d = CusumDetector(direction="increase").fit(_daily_rates(base, per_day))
        daily += d.test(_daily_rates(cur, per_day)).status == "ALERT"
    # alpha = 0.05: 15 of 300 expected; the binomial 99.9% range is about 5 to 29.
    assert 5 <= bernoulli <= 29
    # The daily-rate CUSUM, standardised by a baseline of a flag or two (or none), alarms on a
    # single flagged answer far more often than alpha.
    assert daily > 3 * 15


def test_a_tripled_rate_is_found_and_dated() -> None:
    base = _flags(2000, 0.005, 1)
    cur = np.concatenate([_flags(300, 0.005, 2), _flags(300, 0.08, 3)])
    days = [f"day {i // 100}" for i in range(cur.size)]
    res = BernoulliCusumDetector(seed=4).fit(base).test(cur, index=days)
    assert res.status == "ALERT" and res.drifted
    assert res.p_value is not None and res.p_value <= 0.05
    assert res.score > res.threshold
    alarm = res.details["alarm_index"]
    assert 300 <= alarm < 400  # within a hundred requests of the change
    assert res.details["alarm_label"] == days[alarm]
    assert res.details["change_index"] <= alarm
    json.dumps(res.to_dict(), allow_nan=False)


def test_the_same_seed_gives_the_same_threshold_and_p_value() -> None:
    base, cur = _flags(800, 0.01, 5), _flags(400, 0.02, 6)
    a = BernoulliCusumDetector(seed=7).fit(base).test(cur)
    b = BernoulliCusumDetector(seed=7).fit(base).test(cur)
    assert (a.threshold, a.p_value, a.score) == (b.threshold, b.p_value, b.score)


def test_contract_and_bad_input() -> None:
    det = get_detector("bernoulli_cusum", alpha=0.01)
    assert isinstance(det, BernoulliCusumDetector)
    small = det.fit(_flags(100, 0.1, 1)).test(_flags(5, 0.1, 2))
    assert small.status == "INSUFFICIENT_DATA" and small.drifted is None
    with pytest.raises(InputError) as exc:
        det.fit([0, 1, 2])
    assert exc.value.field == "baseline"
    with pytest.raises(InputError) as exc:
        BernoulliCusumDetector(ratio=1.0)
    assert exc.value.field == "ratio"
    with pytest.raises(InputError) as exc:
        det.fit(_flags(100, 0.1, 1)).test(_flags(50, 0.1, 2), index=["x"])
    assert exc.value.field == "index"


def test_simulated_peaks_from_flag_to_flag_match_the_request_by_request_process() -> None:
    """The simulation jumps from flag to flag; its peaks have the distribution of the CUSUM run
    request by request (a two-sample Kolmogorov-Smirnov test on 4,000 windows each)."""
    from scipy.stats import ks_2samp

    from modelwarden.drift.quality import simulated_peaks

    n, up, down = 600, float(np.log(3.0)), float(np.log(0.985 / 0.995))
    rates = np.random.default_rng(1).beta(3.5, 600.0, size=4000)
    fast = simulated_peaks(rates, n, up, down, np.random.default_rng(2))
    rng = np.random.default_rng(3)
    s, slow = np.zeros(rates.size), np.zeros(rates.size)
    for _ in range(n):
        s = np.maximum(0.0, s + np.where(rng.random(rates.size) < rates, up, down))
        np.maximum(slow, s, out=slow)
    assert ks_2samp(fast, slow).pvalue > 0.01
    assert abs(np.quantile(fast, 0.95) - np.quantile(slow, 0.95)) < 0.35
    # No flag at all in a window: its peak is zero, as request by request.
    assert (simulated_peaks(np.full(50, 1e-12), n, up, down, rng) == 0).all()
