"""The canary judge on planted data: Pass, Fail, Inconclusive and NoData, gate by gate."""

from __future__ import annotations

import math

import numpy as np
import pytest

from modelwarden.rollout.judge import (
    FAIL,
    INCONCLUSIVE,
    NO_DATA,
    PASS,
    Sample,
    hodges_lehmann,
    judge,
    newcombe_upper,
)
from modelwarden.rollout.plan import Gate, default_gates


def sample(
    n: int,
    *,
    safety: float = 0.05,
    error: float = 0.0,
    mean_score: float = 4.4,
    latency: float = 300.0,
    seed: int = 0,
    rated: float = 0.5,
) -> Sample:
    """Exact shares (not random) for the rates, so that the planted difference is the real one."""
    rng = np.random.default_rng(seed)
    k = round(n * safety)
    e = round(n * error)
    scores = np.clip(np.round(rng.normal(mean_score, 0.8, int(n * rated))), 1, 5)
    return Sample(
        latency=rng.lognormal(np.log(latency), 0.35, n),
        safety=np.arange(n) < k,
        error=np.arange(n) < e,
        score=scores,
    )


GATES = default_gates()


def verdicts(
    canary: Sample, stable: Sample, alpha: float = 0.05, rule: str = "no_harm"
) -> dict[str, str]:
    v = judge(canary, stable, GATES, alpha, rule)
    return {"overall": v.verdict, **{g.metric: g.verdict for g in v.gates}}


@pytest.mark.parametrize("rule", ["no_harm", "non_inferiority"])
def test_same_behaviour_on_plenty_of_data_passes(rule: str) -> None:
    v = verdicts(sample(8000, seed=1), sample(8000, seed=2), rule=rule)
    assert v == {
        "overall": PASS,
        "safety_rate": PASS,
        "error_rate": PASS,
        "feedback_avg": PASS,
        "latency_ms": PASS,
    }


def test_each_gate_gets_its_share_of_alpha() -> None:
    res = judge(sample(300, seed=1), sample(300, seed=2), GATES, 0.05)
    assert {g.alpha for g in res.gates} == {0.0125}


def test_a_doubled_safety_rate_fails() -> None:
    res = judge(sample(1000, safety=0.10, seed=1), sample(1000, seed=2), GATES, 0.05)
    assert res.verdict == FAIL
    g = res.failing()
    assert g is not None and g.metric == "safety_rate"
    assert g.worsening == pytest.approx(5.0) and g.p_value is not None and g.p_value < 1e-4


def test_a_feedback_drop_and_a_slower_model_fail_their_gates() -> None:
    v = verdicts(sample(800, mean_score=3.8, latency=450, seed=1), sample(800, seed=2))
    assert v["feedback_avg"] == FAIL and v["latency_ms"] == FAIL and v["overall"] == FAIL
    assert v["safety_rate"] == PASS


def test_no_harm_passes_what_non_inferiority_cannot_prove_yet() -> None:
    # The same safety rate on 800 requests a side: no sign of harm, but the interval is still
    # wider than the one-point margin.
    canary, stable = sample(800, seed=1), sample(800, seed=2)
    assert verdicts(canary, stable)["safety_rate"] == PASS
    assert verdicts(canary, stable, rule="non_inferiority")["safety_rate"] == INCONCLUSIVE


def test_looking_worse_without_significance_is_inconclusive_not_a_failure() -> None:
    # 60 requests a side: 1.7 points more flags is beyond the margin, but could be chance.
    v = verdicts(sample(60, safety=0.067, rated=1.0, seed=1), sample(60, rated=1.0, seed=2))
    assert v["safety_rate"] == INCONCLUSIVE
    assert v["overall"] == INCONCLUSIVE


def test_below_min_samples_is_no_data() -> None:
    res = judge(sample(25, seed=1), sample(500, seed=2), GATES, 0.05)
    assert res.verdict == NO_DATA
    assert all(g.verdict == NO_DATA for g in res.gates)
    assert "25 canary" in res.gates[0].message


def test_no_data_on_one_gate_holds_even_when_the_rest_pass() -> None:
    v = verdicts(sample(3000, rated=0.005, seed=1), sample(3000, rated=0.005, seed=2))
    assert v["feedback_avg"] == NO_DATA and v["safety_rate"] == PASS and v["overall"] == NO_DATA


def test_a_significant_but_negligible_difference_does_not_fail() -> None:
    # 0.5 points more flags on 100,000 requests a side: real (p < 1e-6) but under the 1-point
    # floor, and the upper bound stays inside the margin.
    gate = [Gate(metric="safety_rate", comparator="increase_pp", margin=1.0)]
    for rule in ("no_harm", "non_inferiority"):
        res = judge(sample(100_000, safety=0.055), sample(100_000, safety=0.05), gate, 0.05, rule)
        g = res.gates[0]
        assert g.p_value is not None and g.p_value < 1e-6
        assert g.verdict == PASS and g.worsening == pytest.approx(0.5)


def test_newcombe_interval_matches_the_published_example() -> None:
    # Newcombe (1998), Table II, example (a): 56/70 vs 48/80, 95 % interval 0.0524 to 0.3339.
    assert newcombe_upper(56, 70, 48, 80, 0.025) == pytest.approx(0.3339, abs=5e-4)
    assert -newcombe_upper(48, 80, 56, 70, 0.025) == pytest.approx(0.0524, abs=5e-4)


def test_hodges_lehmann_recovers_a_planted_shift() -> None:
    rng = np.random.default_rng(3)
    s = np.log(rng.lognormal(np.log(300), 0.3, 400))
    c = s + math.log(1.5)
    est, upper = hodges_lehmann(c, s, 0.05)
    assert math.exp(est) == pytest.approx(1.5, rel=1e-9)
    assert upper > est


def test_gate_metric_and_comparator_must_match() -> None:
    with pytest.raises(ValueError, match="judged with increase_pp"):
        Gate(metric="safety_rate", comparator="decrease", margin=1)
